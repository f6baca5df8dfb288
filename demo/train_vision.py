"""Teach the vision tower of a demo training run to see, on dense per-cell targets alone.

A linear probe on the image embeddings of a run trained 170k samples on answers alone found
no color in object cells (18% vs 20% for the majority class): the answer's loss reaches the
vision tower too weakly for it to learn what each cell shows. This phase trains only the vision
tower, its merger and the dense heads on every cell's color, shape and edge offsets
(``train_dense.cell_loss``), without the text model, so a step costs a fraction of a full one.
It updates the run's resume point in place; the run's optimizer state is kept as it was.

Example::

    python -m boxguard.demo.train_vision --out runs/demo --minutes 20 --threads 2
    python -m boxguard.demo.train --out runs/demo --resume --dense-weight 1   # then go on
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .train_data import DataSpec, Encoder, load_model, make_example, save_atomically
from .train_dense import DenseHeads, cell_accuracy, cell_loss

# Scenes of this phase come from a stretch of the train stream the main loop does not reach.
FIRST_IMAGE = 10_000_000


def build_parser() -> argparse.ArgumentParser:
    """CLI flags."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="run directory of demo.train (has base/)")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: no limit)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    return ap


class VisionPhase:
    """Vision tower + dense heads of a run, with their own optimizer."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        torch.set_num_threads(args.threads)
        self.out = Path(args.out)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        run_args = json.loads((self.out / "run_args.json").read_text())
        self.saved = torch.load(
            self.out / "train_state.pt", map_location=self.device, weights_only=False
        )
        self.model = load_model(self.out / "base", self.device)
        self.model.load_state_dict(self.saved["model"])
        self.visual = self.model.model.visual
        self.visual.train()
        self.dense = DenseHeads(self.model.config.text_config.hidden_size).to(self.device)
        if "dense" in self.saved:
            self.dense.load_state_dict(self.saved["dense"])
        self.encoder = Encoder(self.out / "base")
        params = [
            *self.visual.parameters(),
            *self.dense.classes.parameters(),
            *self.dense.offsets.parameters(),
        ]
        self.opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
        self.spec = DataSpec(seed=run_args["seed"], questions_per_image=1)
        self.phase = self.saved["state"].setdefault("vision_phase", {"steps": 0, "images": 0})

    def step(self) -> tuple[float, float, float]:
        """One step on a fresh batch: (loss, color accuracy, shape accuracy) on covered cells."""
        first = FIRST_IMAGE + self.phase["images"]
        examples = [
            make_example(first + i, self.spec, self.encoder) for i in range(self.args.batch_size)
        ]
        pix, targets = self.encoder.image_inputs(examples)
        grid = pix["image_grid_thw"].to(self.device)
        embeds = self.visual(pix["pixel_values"].to(self.device), grid_thw=grid).pooler_output
        loss = cell_loss(self.dense, embeds, targets, self.encoder.cell_px)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.visual.parameters(), 1.0)
        self.opt.step()
        self.phase["steps"] += 1
        self.phase["images"] += len(examples)
        with torch.no_grad():
            color, shape = cell_accuracy(self.dense, embeds, targets)
        return float(loss.detach()), color, shape

    def save(self) -> None:
        """Write the trained tower and heads back into the run's resume point (atomically)."""
        self.saved["model"] = self.model.state_dict()
        self.saved["dense"] = self.dense.state_dict()
        save_atomically(self.saved, self.out / "train_state.pt")

    def run(self) -> dict:
        """Train for ``--minutes`` (or ``--max-steps``); returns the last averaged figures."""
        deadline = time.time() + self.args.minutes * 60
        window: list[tuple[float, float, float]] = []
        steps = 0
        summary: dict = {}
        while time.time() < deadline and not (self.args.max_steps and steps >= self.args.max_steps):
            window.append(self.step())
            steps += 1
            if steps % 25 == 0:
                summary = self.summary(window)
        if window:
            summary = self.summary(window)
        self.save()
        return summary

    def summary(self, window: list[tuple[float, float, float]]) -> dict:
        """Print and return the window's mean loss and accuracies; empties the window."""
        loss, color, shape = (sum(v) / len(window) for v in zip(*window, strict=True))
        window.clear()
        row = {
            "vision_step": self.phase["steps"],
            "images": self.phase["images"],
            "loss": round(loss, 4),
            "color_acc": round(color, 3),
            "shape_acc": round(shape, 3),
        }
        print(json.dumps(row), flush=True)
        return row


def main(argv: list[str] | None = None) -> dict:
    """Entry point of ``python -m boxguard.demo.train_vision``."""
    return VisionPhase(build_parser().parse_args(argv)).run()


if __name__ == "__main__":
    main()
