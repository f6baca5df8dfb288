"""Average two checkpoints' weights (WiSE-FT): a fine-tune's gains with less of its drift.

    python -m boxguard.demo.average demo/checkpoint runs/s10/last --weight 0.5 --out runs/wise50

writes ``runs/wise50``: the first checkpoint's files (config, tokenizer, processor), with
``model.safetensors`` replaced by ``(1 - weight) * first + weight * second`` tensor by tensor.
Both must share the architecture (same tensor names, shapes and dtypes); integer tensors, if
any, must be equal and are kept. A guard policy file is not copied: it was calibrated on the
first checkpoint's answers (``boxguard calibrate`` the result before shipping it).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
POLICY = "boxguard_policy.json"


def average_weights(
    first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], weight: float
) -> dict[str, torch.Tensor]:
    """``(1 - weight) * first + weight * second`` per tensor, computed in float32.

    Example:
        >>> a, b = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
        >>> average_weights(a, b, 0.25)["w"].tolist()
        [0.25, 0.25]
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], not {weight}")
    if first.keys() != second.keys():
        missing = sorted(first.keys() ^ second.keys())[:3]
        raise ValueError(f"the checkpoints differ in their tensors, e.g. {missing}")
    out: dict[str, torch.Tensor] = {}
    for name, a in first.items():
        b = second[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(f"{name}: {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}")
        if not a.is_floating_point():
            if not torch.equal(a, b):
                raise ValueError(f"{name}: integer tensors differ; they cannot be averaged")
            out[name] = a
            continue
        mixed = (1 - weight) * a.float() + weight * b.float()
        out[name] = mixed.to(a.dtype).contiguous()
    return out


def average_checkpoints(first: Path, second: Path, weight: float, out: Path) -> Path:
    """Write the averaged checkpoint to `out` (the first's other files copied beside it)."""
    if out.resolve() in (first.resolve(), second.resolve()):
        raise ValueError("--out must be a new directory, not one of the inputs")
    mixed = average_weights(load_file(first / WEIGHTS), load_file(second / WEIGHTS), weight)
    out.mkdir(parents=True, exist_ok=True)
    for path in first.iterdir():
        if path.is_file() and path.name not in (WEIGHTS, POLICY):
            shutil.copy2(path, out / path.name)
    save_file(mixed, str(out / WEIGHTS), metadata={"format": "pt"})
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: FIRST SECOND --weight W --out DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="checkpoint directory (its files are copied)")
    parser.add_argument("second", type=Path, help="checkpoint directory of the same model")
    parser.add_argument("--weight", type=float, default=0.5, help="share of the second")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        out = average_checkpoints(args.first, args.second, args.weight, args.out)
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
