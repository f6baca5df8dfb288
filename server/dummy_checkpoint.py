"""Full-size Qwen-VL checkpoint directories without weights, for `--load-format dummy`.

Each directory holds the public config.json of the model (every size, the vision tower, rope and
M-RoPE sections, vocabulary), its public preprocessor_config.json, the real Qwen tokenizer
(`qwen_tokenizer`) and no weights: both backends serve it with random weights
(`boxguard serve --load-format dummy`), so sizes, speed and memory are the real model's.
Standard library only.

    python -m boxguard.server.dummy_checkpoint --config qwen2_5_vl-3b --out /tmp/qwen25vl-3b
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from .qwen_tokenizer import SPECIAL_TOKEN_IDS, TokenizerUnavailable, qwen_tokenizer_dir

_IDS = {
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
}
_QWEN2_TEXT = {
    "attention_dropout": 0.0,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
}
_QWEN25_VISION = {
    "depth": 32,
    "hidden_act": "silu",
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "temporal_patch_size": 2,
}


def _qwen25(hidden: int, inter: int, layers: int, heads: int, kv: int, **kw: Any) -> dict:
    """A Qwen2.5-VL config.json in the published (flat) layout."""
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        **_IDS,
        **_QWEN2_TEXT,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "max_position_embeddings": 128000,
        "transformers_version": "4.41.2",
        **kw,
        "vision_config": {**_QWEN25_VISION, "out_hidden_size": hidden},
    }


# config.json of Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct,
# Qwen/Qwen2-VL-2B-Instruct and Qwen/Qwen3-VL-2B-Instruct (values as published).
CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2_5_vl-3b": _qwen25(
        2048, 11008, 36, 16, 2, max_window_layers=70, tie_word_embeddings=True, vocab_size=151936
    ),
    "qwen2_5_vl-7b": _qwen25(
        3584, 18944, 28, 28, 4, max_window_layers=28, tie_word_embeddings=False, vocab_size=152064
    ),
    "qwen2_vl-2b": {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        **_IDS,
        **_QWEN2_TEXT,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "max_window_layers": 28,
        "tie_word_embeddings": True,
        "vocab_size": 151936,
        "vision_config": {
            "depth": 32,
            "embed_dim": 1280,
            "mlp_ratio": 4,
            "num_heads": 16,
            "in_chans": 3,
            "hidden_size": 1536,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "temporal_patch_size": 2,
        },
    },
    "qwen3_vl-2b": {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl",
        "image_token_id": 151655,
        "video_token_id": 151656,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "tie_word_embeddings": True,
        "transformers_version": "4.57.0.dev0",
        "text_config": {
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": 151643,
            "dtype": "bfloat16",
            "eos_token_id": 151645,
            "head_dim": 128,
            "hidden_act": "silu",
            "hidden_size": 2048,
            "initializer_range": 0.02,
            "intermediate_size": 6144,
            "max_position_embeddings": 262144,
            "model_type": "qwen3_vl_text",
            "num_attention_heads": 16,
            "num_hidden_layers": 28,
            "num_key_value_heads": 8,
            "rms_norm_eps": 1e-06,
            "rope_scaling": {
                "mrope_interleaved": True,
                "mrope_section": [24, 20, 20],
                "rope_type": "default",
            },
            "rope_theta": 5000000,
            "tie_word_embeddings": True,
            "use_cache": True,
            "vocab_size": 151936,
        },
        "vision_config": {
            "deepstack_visual_indexes": [5, 11, 17],
            "depth": 24,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": 1024,
            "in_channels": 3,
            "initializer_range": 0.02,
            "intermediate_size": 4096,
            "model_type": "qwen3_vl",
            "num_heads": 16,
            "num_position_embeddings": 2304,
            "out_hidden_size": 2048,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
    },
}

_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _qwen2_processor(processor_class: str) -> dict[str, Any]:
    """Qwen2-VL's / Qwen2.5-VL's published preprocessor_config.json."""
    return {
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": _CLIP_MEAN,
        "image_std": _CLIP_STD,
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": processor_class,
    }


PREPROCESSORS: dict[str, dict[str, Any]] = {
    "qwen2_5_vl": _qwen2_processor("Qwen2_5_VLProcessor"),
    "qwen2_vl": _qwen2_processor("Qwen2VLProcessor"),
    "qwen3_vl": {
        "size": {"longest_edge": 16777216, "shortest_edge": 65536},
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "Qwen3VLProcessor",
        "image_processor_type": "Qwen2VLImageProcessorFast",
    },
}


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The text model's fields (nested for Qwen3-VL, top-level for Qwen2/2.5-VL)."""
    text = config.get("text_config")
    return text if isinstance(text, dict) else config


def build_dummy_checkpoint(name: str, out_dir: str | Path) -> Path:
    """Write config.json, preprocessor_config.json, generation_config.json and the tokenizer.

    Raises TokenizerUnavailable when the real tokenizer cannot be fetched.

    Example:
        >>> build_dummy_checkpoint("qwen2_5_vl-3b", "/tmp/qwen25vl-3b")  # doctest: +SKIP
        PosixPath('/tmp/qwen25vl-3b')
    """
    if name not in CONFIGS:
        raise ValueError(f"config must be one of {', '.join(CONFIGS)}")
    config = CONFIGS[name]
    family = config["model_type"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(qwen_tokenizer_dir(family) / name, out / name)
    if config["image_token_id"] != SPECIAL_TOKEN_IDS["<|image_pad|>"]:
        raise TokenizerUnavailable("config and tokenizer disagree on <|image_pad|>")
    text = _text_config(config)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(
        json.dumps(PREPROCESSORS[family], indent=2) + "\n"
    )
    # Only the ids: the published sampling defaults (top_k=1, repetition_penalty=1.05, ...)
    # would make transformers' generate() differ from the engine boxguard drives explicitly.
    generation = {
        "bos_token_id": text["bos_token_id"],
        "eos_token_id": [text["eos_token_id"], SPECIAL_TOKEN_IDS["<|endoftext|>"]],
        "pad_token_id": SPECIAL_TOKEN_IDS["<|endoftext|>"],
    }
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """Build one dummy checkpoint directory; exit 1 when the tokenizer is unavailable."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        print(build_dummy_checkpoint(args.config, args.out))
    except TokenizerUnavailable as exc:
        print(f"the real Qwen tokenizer is unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
