"""Builds a small real Qwen2.5-VL checkpoint (random weights, local tokenizer) in seconds.

The directory is a normal Hugging Face model directory: the server loads it with the same code
it uses for real Qwen-VL weights. torch and transformers are imported only when building.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# Qwen2 special tokens in their original order; here they sit right after the base vocabulary.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2's pre-tokenizer: digits split one by one (\p{N}), words with one leading non-letter.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of the built checkpoint; the defaults make a ~1 MB test model."""

    vocab_merges: int = 700
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    vision_hidden: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate: int = 64
    min_pixels: int = 56 * 56
    max_pixels: int = 224 * 224
    # Qwen's theta (1e6) gives the width axis only the lowest rotary frequencies; a smaller theta
    # or another split is a training lever (demo/train.py --rope-theta, --mrope-section).
    rope_theta: float = 1000000.0
    mrope_section: tuple[int, int, int] | None = None
    seed: int = 0


def _tokenizer_corpus() -> list[str]:
    """Text the BPE merges are learned from: prompts, JSON answers, think traces, vocabulary."""
    from .models.base import R1_SUFFIX, SYSTEM_PROMPT

    words = (
        "circle square triangle star hexagon red green blue yellow purple orange small large "
        "left right of above below leftmost rightmost topmost bottom-most the a an is there no "
        "I see target It The and yes Does this crop show Answer or object image in"
    )
    lines = [
        SYSTEM_PROMPT,
        "Locate the red circle in this image and output the bbox coordinates in JSON format.",
        'Locate every object that matches the description "the blue star" in this image '
        "and output the bbox coordinates in JSON format.",
        R1_SUFFIX,
        '[{"bbox_2d": [12, 34, 56, 78], "label": "red circle"}]',
        '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "green square"}]\n```',
        "<think>I see a red circle and a blue square. The target is the red circle.</think>",
        "<answer>[]</answer>",
        words,
    ]
    return lines * 20


def build_tokenizer(out_dir: Path, merges: int = 700) -> dict[str, int]:
    """Train a byte-level BPE with Qwen2's pre-tokenizer; returns the special token ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + merges,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config_path.write_text(json.dumps(config, indent=2))
    ids: dict[str, int] = {}
    for token in SPECIAL_TOKENS:
        token_id = tok.token_to_id(token)
        if token_id is None:
            raise RuntimeError(f"the trained tokenizer lost the special token {token}")
        ids[token] = token_id
    return ids


def build_tiny_checkpoint(
    out_dir: str | Path, config: TinyConfig | None = None, *, family: str = "qwen2_5_vl"
) -> Path:
    """Write a random-weight Qwen-VL checkpoint with tokenizer and image processor config.

    `family` is qwen2_5_vl (the default, what the demo trains), qwen2_vl or qwen3_vl.

    Example:
        >>> build_tiny_checkpoint("/tmp/tiny-qwen25vl")  # doctest: +SKIP
        PosixPath('/tmp/tiny-qwen25vl')
    """
    import torch
    from transformers import AutoModelForImageTextToText, Qwen2VLImageProcessorPil

    cfg = config or TinyConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = build_tokenizer(out, cfg.vocab_merges)
    vocab_size = max(ids.values()) + 1
    # Round up so the embedding has headroom, as real checkpoints do.
    vocab_size = (vocab_size + 63) // 64 * 64
    model_config = _model_config(family, cfg, ids, vocab_size)
    torch.manual_seed(cfg.seed)
    model = AutoModelForImageTextToText.from_config(model_config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out, safe_serialization=True)
    processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels},
        patch_size=PATCH_SIZE[family],
        temporal_patch_size=2,
        merge_size=2,
    )
    processor.save_pretrained(out)
    # safetensors writes 0600; a non-root container serving a mounted copy must read it.
    for path in out.iterdir():
        path.chmod(0o644)
    return out


PATCH_SIZE = {"qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 16}


def _model_config(
    family: str, cfg: TinyConfig, ids: dict[str, int], vocab_size: int
) -> PretrainedConfig:
    """The transformers config of one family at the tiny sizes of `cfg`."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    if family not in PATCH_SIZE:
        raise ValueError(f"family must be one of {sorted(PATCH_SIZE)}")
    head_dim = cfg.text_hidden // cfg.text_heads
    rope: dict[str, Any] = {
        "rope_type": "default",
        "rope_theta": cfg.rope_theta,
        "mrope_section": list(cfg.mrope_section or _mrope_section(head_dim)),
    }
    text = {
        "vocab_size": vocab_size,
        "hidden_size": cfg.text_hidden,
        "intermediate_size": cfg.text_intermediate,
        "num_hidden_layers": cfg.text_layers,
        "num_attention_heads": cfg.text_heads,
        "num_key_value_heads": cfg.text_kv_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": rope,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    vision: dict[str, Any] = {
        "depth": cfg.vision_depth,
        "num_heads": cfg.vision_heads,
        "patch_size": PATCH_SIZE[family],
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    config_cls: type[PretrainedConfig]
    if family == "qwen2_vl":
        vision.update(embed_dim=cfg.vision_hidden, hidden_size=cfg.text_hidden, mlp_ratio=2)
        config_cls, arch = Qwen2VLConfig, "Qwen2VLForConditionalGeneration"
    elif family == "qwen2_5_vl":
        vision.update(
            hidden_size=cfg.vision_hidden,
            intermediate_size=cfg.vision_intermediate,
            out_hidden_size=cfg.text_hidden,
            window_size=112,
            fullatt_block_indexes=[cfg.vision_depth - 1],
        )
        config_cls, arch = Qwen2_5_VLConfig, "Qwen2_5_VLForConditionalGeneration"
    else:
        text["head_dim"] = head_dim
        # As Qwen3-VL's published configs: transformers always interleaves the M-RoPE sections,
        # vLLM only when told, and image tokens then got other positions there.
        rope["mrope_interleaved"] = True
        vision.update(
            hidden_size=cfg.vision_hidden,
            intermediate_size=cfg.vision_intermediate,
            out_hidden_size=cfg.text_hidden,
            num_position_embeddings=256,
            deepstack_visual_indexes=[cfg.vision_depth - 1],
        )
        config_cls, arch = Qwen3VLConfig, "Qwen3VLForConditionalGeneration"
    config = config_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.architectures = [arch]
    return config


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies into (temporal, height, width) like Qwen's [16,24,24]."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]
