"""Dummy (config-only) checkpoints of the real models: public configs, real tokenizer, frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from boxguard.server.dummy_checkpoint import CONFIGS, main
from boxguard.server.models import adapter_for
from boxguard.server.qwen_tokenizer import SPECIAL_TOKEN_IDS
from real_qwen import dummy_checkpoint

# (config, model_type, text hidden size, layers, vocab, M-RoPE sections, frame of 640x480)
EXPECTED = [
    ("qwen2_5_vl-3b", "qwen2_5_vl", 2048, 36, 151936, [16, 24, 24], (644, 476)),
    ("qwen2_5_vl-7b", "qwen2_5_vl", 3584, 28, 152064, [16, 24, 24], (644, 476)),
    ("qwen2_vl-2b", "qwen2_vl", 1536, 28, 151936, [16, 24, 24], (644, 476)),
    ("qwen3_vl-2b", "qwen3_vl", 2048, 28, 151936, [24, 20, 20], (640, 480)),
]


@pytest.mark.parametrize(
    ("name", "model_type", "hidden", "layers", "vocab", "mrope", "frame"), EXPECTED
)
def test_dummy_checkpoint_is_the_public_model(
    tmp_path: Path,
    name: str,
    model_type: str,
    hidden: int,
    layers: int,
    vocab: int,
    mrope: list[int],
    frame: tuple[int, int],
) -> None:
    transformers = pytest.importorskip("transformers")
    out = dummy_checkpoint(name, tmp_path / name)
    assert not list(out.glob("*.safetensors"))
    config = transformers.AutoConfig.from_pretrained(out)
    text = config.get_text_config()
    assert (config.model_type, text.hidden_size, text.num_hidden_layers, text.vocab_size) == (
        model_type,
        hidden,
        layers,
        vocab,
    )
    assert text.rope_parameters["mrope_section"] == mrope
    # The tokenizer is the checked real one (test_qwen_tokenizer loads it); its ids fit.
    tok = json.loads((out / "tokenizer.json").read_text())
    added = {a["content"]: a["id"] for a in tok["added_tokens"]}
    assert added["<|image_pad|>"] == config.image_token_id == 151655
    assert added["<|vision_start|>"] == config.vision_start_token_id
    assert max(added.values()) < vocab and len(tok["model"]["vocab"]) == 151643
    adapter = adapter_for(out)
    assert adapter.model_type == model_type
    model_frame = adapter.model_frame(640, 480)
    assert (model_frame.width, model_frame.height) == frame
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"][0] == SPECIAL_TOKEN_IDS["<|im_end|>"]


def test_cli_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--config", "qwen9-vl", "--out", "/nonexistent"])
    err = capsys.readouterr().err
    assert all(name in err for name in CONFIGS)
