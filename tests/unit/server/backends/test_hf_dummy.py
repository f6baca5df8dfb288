"""--load-format dummy on the transformers backend: random weights in the target dtype."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from boxguard.server.backends.hf_engine import (  # noqa: E402
    DUMMY_RANGE,
    DecodeParams,
    HFEngine,
    SequenceJob,
    dummy_model,
    fill_dummy_weights,
)
from boxguard.server.models import adapter_for  # noqa: E402
from transformers import AutoConfig  # noqa: E402


def test_fill_keeps_dtype_and_range_and_differs_between_tensors() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(300, 4000), torch.nn.Linear(300, 4000))
    model.to(torch.bfloat16)
    fill_dummy_weights(model)
    params = [p.detach() for p in model.parameters()]
    assert all(p.dtype == torch.bfloat16 for p in params)
    assert all(float(p.abs().max()) <= DUMMY_RANGE for p in params)
    assert all(float(p.float().std()) > DUMMY_RANGE / 4 for p in params)
    assert not torch.equal(params[0], params[2])


def test_dummy_model_is_built_in_bf16_with_tied_embeddings(tiny_checkpoint: Path) -> None:
    config = AutoConfig.from_pretrained(tiny_checkpoint)
    config.tie_word_embeddings = config.get_text_config().tie_word_embeddings = True
    model = dummy_model(config, torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    # Rotary buffers are computed, not left empty (a meta-device build would lose them).
    inv_freq = next(b for n, b in model.named_buffers() if n.endswith("rotary_emb.inv_freq"))
    assert torch.isfinite(inv_freq).all() and float(inv_freq[0]) == 1.0


def test_engine_serves_a_config_only_directory(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """No weights in the directory: load_format=dummy serves it, the default refuses it."""
    bare = tmp_path / "bare"
    shutil.copytree(tiny_checkpoint, bare, ignore=shutil.ignore_patterns("*.safetensors"))
    adapter = adapter_for(bare)
    kw = {"min_pixels": adapter.min_pixels, "max_pixels": adapter.max_pixels, "device": "cpu"}
    with pytest.raises(OSError):
        HFEngine(str(bare), dtype="float32", **kw)
    engine = HFEngine(str(bare), dtype="bfloat16", load_format="dummy", **kw)
    assert engine.model.dtype == torch.bfloat16
    [result] = engine.generate([SequenceJob("Say", None, None)], DecodeParams(max_new_tokens=3))
    assert len(result.tokens) == 3 or result.finish_reason == "stop"
