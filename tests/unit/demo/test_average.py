"""demo/average.py: two checkpoints' weights averaged tensor by tensor, the rest copied."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from boxguard.demo.average import average_checkpoints, average_weights
from safetensors.torch import load_file, save_file


def checkpoint(path: Path, value: float, *, extra: str = "") -> Path:
    path.mkdir()
    tensors = {"a.weight": torch.full((2, 3), value), "b.bias": torch.full((3,), value / 2)}
    tensors |= {"positions": torch.arange(4)}
    if extra:
        tensors[extra] = torch.zeros(1)
    save_file(tensors, str(path / "model.safetensors"))
    (path / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (path / "boxguard_policy.json").write_text('{"visual_min_yes": 0.9}')
    return path


def test_the_average_is_weighted_and_keeps_the_first_checkpoints_files(tmp_path: Path) -> None:
    first = checkpoint(tmp_path / "first", 1.0)
    second = checkpoint(tmp_path / "second", 5.0)
    out = average_checkpoints(first, second, 0.25, tmp_path / "mixed")
    mixed = load_file(out / "model.safetensors")
    assert torch.allclose(mixed["a.weight"], torch.full((2, 3), 2.0))  # 0.75 * 1 + 0.25 * 5
    assert torch.allclose(mixed["b.bias"], torch.full((3,), 1.0))
    assert torch.equal(mixed["positions"], torch.arange(4))  # integers kept as they are
    assert (out / "config.json").read_text() == (first / "config.json").read_text()
    assert not (out / "boxguard_policy.json").exists()  # calibrated on other answers


def test_weights_of_other_models_are_refused(tmp_path: Path) -> None:
    first = checkpoint(tmp_path / "first", 1.0)
    other = checkpoint(tmp_path / "other", 1.0, extra="c.weight")
    with pytest.raises(ValueError, match="differ in their tensors"):
        average_checkpoints(first, other, 0.5, tmp_path / "out")
    wide = {"a.weight": torch.zeros(2, 4)}
    with pytest.raises(ValueError, match="a.weight"):
        average_weights({"a.weight": torch.zeros(2, 3)}, wide, 0.5)
    with pytest.raises(ValueError, match="weight must be in"):
        average_weights(wide, wide, 1.5)
    with pytest.raises(ValueError, match="new directory"):
        average_checkpoints(first, other, 0.5, first)


def test_the_command_line_writes_the_average_and_fails_in_one_line(tmp_path: Path) -> None:
    first = checkpoint(tmp_path / "first", 0.0)
    second = checkpoint(tmp_path / "second", 2.0)
    cmd = [sys.executable, "-m", "boxguard.demo.average", str(first), str(second)]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "w")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert torch.allclose(
        load_file(tmp_path / "w" / "model.safetensors")["a.weight"], torch.ones(2, 3)
    )
    bad = subprocess.run(
        [*cmd, "--weight", "2", "--out", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "error: weight must be in [0, 1], not 2.0"
