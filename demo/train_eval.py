"""Evaluation, export and reporting for the demo-checkpoint trainer.

Acc@0.5 is measured on the exported (float16) checkpoint through the server's own ``HFEngine``
with the server's prompt and xgrammar constraint: what is scored is what ships and is served.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import torch
from boxguard.guards.geometry import iou

from .dataset import iter_samples
from .train_data import Encoder, Example, example_from_sample, model_inputs, token_ce

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SHIP_FILES = (
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "chat_template.jinja",
)


class SceneLimits(TypedDict, total=False):
    """Scene overrides for ``iter_samples``; absent keys keep the generator's defaults."""

    min_objects: int
    max_objects: int
    no_target_rate: float


class GenerationScores(TypedDict):
    """What ``generate_acc`` measures: rates over the examples and the first raw output."""

    acc: float
    parse: float
    distinct: float
    example: str


def eval_set(
    encoder: Encoder,
    n: int,
    *,
    seed: int,
    probe: bool,
    fixed_size: tuple[int, int] | None,
    think: bool = False,
) -> list[Example]:
    """Fixed val examples; ``probe``: one object, always present (the answer depends only on
    the image)."""
    kw: SceneLimits = {"min_objects": 1, "max_objects": 1, "no_target_rate": 0.0} if probe else {}
    return [
        example_from_sample(img, s, encoder, think=think)
        for img, s in iter_samples("val", seed, n=n, fixed_size=fixed_size, **kw)
    ]


def constant_box_acc(examples: list[Example]) -> float:
    """Acc@0.5 of the best single constant box (the mean target box), the probe's baseline."""
    boxes = [ex.boxes[0] for ex in examples if ex.boxes[0] is not None]
    if not boxes:
        return 0.0
    mean = [sum(b[i] for b in boxes) / len(boxes) for i in range(4)]
    return sum(iou(mean, b) > 0.5 for b in boxes) / len(examples)


@torch.no_grad()
def teacher_forced_loss(
    model: torch.nn.Module,
    encoder: Encoder,
    examples: list[Example],
    device: torch.device,
    batch_size: int = 16,
) -> tuple[float, float]:
    """(mean CE over answer tokens, mean CE over coordinate-digit tokens) on ``examples``."""
    model.eval()
    tot = [0.0, 0.0]
    cnt = [0.0, 0.0]
    for i in range(0, len(examples), batch_size):
        batch = encoder.encode(examples[i : i + batch_size])
        out = model(**model_inputs(batch, device))
        ce = token_ce(out.logits, batch["labels"].to(device)).cpu()
        masks = [(batch["labels"][:, 1:] != -100).float(), batch["coord"][:, 1:].float()]
        for k, m in enumerate(masks):
            tot[k] += float((ce * m).sum())
            cnt[k] += float(m.sum())
    model.train()
    return tot[0] / max(cnt[0], 1), tot[1] / max(cnt[1], 1)


def export(model: PreTrainedModel, src_dir: Path, out_dir: Path) -> Path:
    """Write a complete HF model dir (float16 weights + tokenizer/processor files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16) for k, v in model.state_dict().items()}
    model.save_pretrained(out_dir, state_dict=state, safe_serialization=True)
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float16"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    for name in SHIP_FILES:
        src = src_dir / name
        if src.is_file() and not (out_dir / name).is_file():
            shutil.copy2(src, out_dir / name)
    return out_dir


def generate_acc(
    model_dir: Path, examples: list[Example], *, batch_size: int = 25, max_tokens: int = 48
) -> GenerationScores:
    """Greedy constrained decoding through the server's HFEngine; Acc@0.5 and parse rate.

    A no-target example is right only with an empty list.
    """
    from boxguard.server.backends.hf_engine import DecodeParams, HFEngine, SequenceJob
    from boxguard.server.models import adapter_for, resize_to_frame

    encoder_adapter = adapter_for(model_dir)
    engine = HFEngine(
        str(model_dir),
        min_pixels=encoder_adapter.min_pixels,
        max_pixels=encoder_adapter.max_pixels,
        device="cpu",
        dtype="float32",
    )
    right = parsed = 0
    outputs: list[str] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        jobs = []
        for ex in chunk:
            frame = encoder_adapter.model_frame(*ex.image.size)
            constraint = encoder_adapter.constraint(
                frame,
                multiple=False,
                think=False,
                max_detections=1,
                max_label_chars=32,
                max_tokens=max_tokens,
                think_max_tokens=64,
            )
            jobs.append(
                SequenceJob(
                    encoder_adapter.prompt(ex.questions[0].expression),
                    resize_to_frame(ex.image, (frame.width, frame.height)),
                    constraint,
                )
            )
        results = engine.generate(jobs, DecodeParams(max_new_tokens=max_tokens))
        for ex, res in zip(chunk, results, strict=True):
            outputs.append(res.text)
            try:
                value = json.loads(res.text)
            except ValueError:
                continue
            parsed += 1
            truth = ex.boxes[0]
            if truth is None:
                right += value == []
            elif value and isinstance(value[0], dict):
                right += iou([float(v) for v in value[0]["bbox_2d"]], truth) > 0.5
    n = max(len(examples), 1)
    distinct = len(set(outputs))
    return {
        "acc": right / n,
        "parse": parsed / n,
        "distinct": distinct / n,
        "example": outputs[0] if outputs else "",
    }


def ship(best_dir: Path, ship_dir: Path) -> None:
    """Copy the shipped files of ``best_dir`` into ``ship_dir`` (the repo's demo/checkpoint)."""
    ship_dir.mkdir(parents=True, exist_ok=True)
    tmp = ship_dir.with_name(ship_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name in SHIP_FILES:
        if (best_dir / name).is_file():
            shutil.copy2(best_dir / name, tmp / name)
    for name in SHIP_FILES:
        if (tmp / name).is_file():
            shutil.move(str(tmp / name), ship_dir / name)
    shutil.rmtree(tmp)


def write_curve_md(path: Path, curve: list[dict], meta: dict) -> None:
    """Rewrite the learning-curve page (bench/results/demo_training.md)."""
    lines = [
        "# Demo checkpoint training: learning curve",
        "",
        f"Machine: {meta.get('machine', '2-core CPU')}. Written by `boxguard.demo.train` "
        "after every eval; the shipped checkpoint (demo/checkpoint) is the best row by val "
        "Acc@0.5 (ties: probe Acc@0.5, then val coordinate-digit loss).",
        "",
        f"Model: {meta.get('model', '')}. Settings: `{meta.get('args', '')}`.",
        "",
        "Val: Acc@0.5 (IoU > 0.5; a no-target sample is right only with `[]`) by greedy "
        "xgrammar-constrained decoding of the exported float16 checkpoint through the server's "
        f"HFEngine and plain prompt, on {meta.get('n_val', '?')} fixed val samples (1-6 objects). "
        f"Probe: {meta.get('n_probe', '?')} one-object val images (the answer depends only on "
        f"the image); a constant (mean) box scores {meta.get('const_acc', 0):.1%} on it.",
        "",
        "| step | samples seen | minutes | max objects | train loss | val loss | val digit loss "
        "| probe digit loss | val Acc@0.5 | val parse rate | probe Acc@0.5 | best |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in curve:
        lines.append(
            f"| {r['step']} | {r['samples']} | {r['minutes']:.1f} | {r['max_objects']} "
            f"| {r['train_loss']:.3f} | {r['val_loss']:.3f} | {r['val_digit_loss']:.3f} "
            f"| {r['probe_digit_loss']:.3f} | {r['val_acc']:.1%} "
            f"| {r['val_parse']:.0%} | {r['probe_acc']:.1%} | {'*' if r.get('best') else ''} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
