"""Train the demo checkpoint: a small Qwen2.5-VL (``build_tiny_checkpoint``) on the shapes world.

Example (CPU or GPU, resumable)::

    python -m boxguard.demo.train --out runs/demo --minutes 60 \\
        --ship-dir demo/checkpoint --curve-md bench/results/demo_training.md
    python -m boxguard.demo.train --out runs/demo --minutes 60 --resume   # continue

``--out`` holds ``base/`` (the built architecture + tokenizer), ``train_state.pt`` (fp32
weights, optimizer, step, data position: the resume point, never shipped), ``curve.jsonl``,
``last/`` and ``best/`` (exported float16 HF dirs). When val Acc@0.5 improves, ``best/`` is
copied into ``--ship-dir`` and the curve page is rewritten; nothing is committed.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from boxguard.server.tiny_checkpoint import build_tiny_checkpoint

from .train_args import load_args, lr_at, parse_size, tiny_config
from .train_attention import attention_loss
from .train_aux import REGRESSION_LOSSES, AuxHeads, box_loss, position_loss
from .train_batches import Batches, BatchPlan, Prefetcher, build_batches, pick_device
from .train_data import (
    DataSpec,
    Encoder,
    curriculum_max_objects,
    load_model,
    make_example,
    model_inputs,
    save_atomically,
    shuffle_rng,
    weighted_loss,
)
from .train_dense import DenseHeads, dense_loss
from .train_eval import (
    constant_box_acc,
    eval_set,
    export,
    generate_acc,
    ship,
    teacher_forced_loss,
    write_curve_md,
)
from .train_export import ExtraRows
from .train_points import point_val_sets
from .train_recheck import recheck_examples, recheck_scores


class Trainer:
    """Holds the model, optimizer and run state; ``run()`` trains until the budget is spent."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        torch.set_num_threads(args.threads)
        self.device = pick_device(args.device)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.base = self.out / "base"
        if not (self.base / "config.json").is_file():
            if args.init_from:
                # Continue from shipped weights (e.g. demo/checkpoint) when no run state exists.
                shutil.copytree(args.init_from, self.base)
            else:
                build_tiny_checkpoint(self.base, tiny_config(args))
        (self.out / "run_args.json").write_text(json.dumps(vars(args), indent=2))
        torch.manual_seed(args.seed)
        self.model = load_model(self.base, self.device)
        self.model.train()
        if args.attention_weight > 0:
            self.model.set_attn_implementation("eager")  # sdpa returns no attention weights
        self.accepts_mm = "mm_token_type_ids" in inspect.signature(self.model.forward).parameters
        self.encoder = Encoder(
            self.base,
            digit_weight=args.digit_weight,
            think_weight=args.think_weight,
            decision_weight=args.decision_weight,
        )
        # Rows of a `boxguard export` (the flywheel's corrections) join every grounding batch.
        self.extra = None
        if args.extra_data:
            self.extra = ExtraRows(
                Path(args.extra_data),
                args.extra_format,
                self.encoder,
                args.extra_per_step,
                args.seed,
            )
            print(f"export rows {self.extra.counts()}, {args.extra_per_step} a step", flush=True)
        self.aux = AuxHeads(self.model.config.text_config.hidden_size).to(self.device)
        self.dense = DenseHeads(self.model.config.text_config.hidden_size).to(self.device)
        params = list(self.model.parameters()) + list(self.aux.parameters())
        groups: list[dict[str, Any]] = [{"params": params}, {"params": self.dense.parameters()}]
        self.opt = torch.optim.AdamW(
            groups, lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.98)
        )
        self.spec = DataSpec(
            seed=args.seed,
            fixed_size=parse_size(args.fixed_size),
            questions_per_image=args.questions_per_image,
            p_think=args.p_think,
            p_multiple=args.p_multiple,
            p_point=args.p_point,
        )
        self.state: dict[str, Any] = {
            "step": 0,
            "samples": 0,
            "image_index": 0,
            "train_s": 0.0,
            "best": None,
            "curve": [],
        }
        state_path = self.out / "train_state.pt"
        if args.resume and state_path.is_file():
            saved = torch.load(state_path, map_location=self.device, weights_only=False)
            self.model.load_state_dict(saved["model"])
            self.aux.load_state_dict(saved["aux"])
            if "dense" in saved:
                self.dense.load_state_dict(saved["dense"])
            self.opt.load_state_dict(with_dense_group(saved["optimizer"], self.dense))
            self.state = saved["state"]
            if args.reset_best:
                self.state["best"] = None
            print(f"resumed at step {self.state['step']} ({self.state['samples']} samples)")
        # Val images have the generator's natural sizes (what a user sends), whatever training uses.
        self.val = eval_set(self.encoder, args.n_val, seed=args.seed, probe=False, fixed_size=None)
        self.probe = eval_set(
            self.encoder, args.n_probe, seed=args.seed + 1, probe=True, fixed_size=None
        )
        # Box questions only: val_digit_loss stays comparable across runs with and without points.
        val_spec = replace(
            self.spec,
            split="val",
            seed=args.seed + 2,
            questions_per_image=1,
            fixed_size=None,
            p_point=0.0,
        )
        self.val_tf = [make_example(i, val_spec, self.encoder) for i in range(48)]
        self.const_acc = constant_box_acc(self.probe)
        self.recheck_val: list = []
        # The box and point re-checks' val crops come from the same val scenes.
        recheck_spec = replace(self.spec, split="val", seed=args.seed + 3, fixed_size=None)
        if args.recheck_per_image > 0 and args.n_recheck_val > 0:
            index = 0
            while len(self.recheck_val) < args.n_recheck_val:
                self.recheck_val += recheck_examples(index, recheck_spec, self.encoder, 4)
                index += 1
        # Point figures only for a run that trains points: the val questions in point mode, and
        # point crops of the box re-check's val scenes.
        self.point_tf: list = []
        self.point_recheck_val: list = []
        if args.p_point > 0 or args.point_recheck_per_image > 0:
            self.point_tf, self.point_recheck_val = point_val_sets(
                self.encoder, val_spec, recheck_spec, args.n_recheck_val
            )
        self.last_aux = (torch.zeros(()), torch.zeros(()), torch.zeros(()))
        self.last_attention = torch.zeros(())
        self.last_recheck = torch.zeros(())
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.batches = (
            Prefetcher(self.plan, self.base, args, args.workers) if args.workers > 0 else None
        )

    def max_objects(self) -> int:
        """Curriculum: the largest scene the generator draws now."""
        return curriculum_max_objects(self.state["samples"], self.args.curriculum_samples)

    def plan(self, step: int, image_index: int, samples: int) -> BatchPlan:
        """What the batch of ``step`` draws (a pure function of the run position)."""
        max_objects = curriculum_max_objects(samples, self.args.curriculum_samples)
        # Several questions per image only once scenes have several objects (one object has
        # one positive expression: repeats would teach copying the previous answer).
        spec = replace(
            self.spec,
            max_objects=max_objects,
            questions_per_image=min(self.spec.questions_per_image, max_objects),
        )
        if self.args.fixed_size_samples and samples >= self.args.fixed_size_samples:
            spec = replace(spec, fixed_size=None)
        rng = shuffle_rng(self.args.seed, step)
        # One prompt style per batch: a think row would pad every plain row to its length.
        spec = replace(spec, p_think=float(rng.random() < self.spec.p_think))
        return BatchPlan(
            step,
            image_index,
            self.args.batch_size,
            spec,
            self.args.recheck_per_image,
            self.args.recheck_positive,
            self.args.point_recheck_per_image,
            self.extra.for_step(step) if self.extra else (),
        )

    def next_batch(self) -> Batches:
        """The batch of the current step: built here, or taken from the worker prefetch."""
        st = self.state
        if self.batches is None:
            return build_batches(
                self.plan(st["step"], st["image_index"], st["samples"]), self.encoder
            )
        return self.batches.next(st["step"], st["image_index"], st["samples"])

    def step(self) -> float:
        """One optimizer step on a fresh batch; returns the weighted loss."""
        st = self.state
        batches = self.next_batch()
        batch = batches.grounding
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.args, st["step"], st["samples"])
        args = self.args
        use_aux = args.position_weight > 0 or args.box_weight > 0 or args.dense_weight > 0
        use_attention = args.attention_weight > 0
        with self.autocast():
            out = self.model(
                **model_inputs(batch, self.device, self.accepts_mm),
                output_hidden_states=use_aux,
                output_attentions=use_attention,
            )
        loss, _ = weighted_loss(out.logits, batch["labels"].to(self.device), batch["weights"])
        if use_aux:
            regress = REGRESSION_LOSSES[args.regression_loss]
            pos_loss = position_loss(
                self.aux.position,
                out.hidden_states[args.position_layer],
                batch["input_ids"],
                batch["image_grid_thw"],
                self.encoder.image_token_id,
                self.encoder.image_processor.merge_size,
                regress,
            )
            b_loss = box_loss(
                self.aux.box,
                out.hidden_states[args.box_layer],
                batch["box_index"],
                batch["box_target"],
                regress,
            )
            loss = loss + args.position_weight * pos_loss + args.box_weight * b_loss
            d_loss = torch.zeros((), device=self.device)
            if args.dense_weight > 0:
                d_loss = dense_loss(
                    self.dense,
                    out.hidden_states[0],
                    out.hidden_states[args.dense_layer],
                    batch["input_ids"],
                    self.encoder.image_token_id,
                    batch["cells"],
                    batch["cell_px"],
                    regress,
                )
                loss = loss + args.dense_weight * d_loss
            # Read only when printed: no per-step device sync.
            self.last_aux = (pos_loss.detach(), b_loss.detach(), d_loss.detach())
        if use_attention:
            a_loss = attention_loss(
                out.attentions[args.attention_layer],
                args.attention_head,
                batch["input_ids"],
                self.encoder.image_token_id,
                batch["box_index"],
                batch["box_target"],
                batch["cells"],
                batch["cell_px"],
                batch["box_first"],
                args.attention_first_weight,
            )
            loss = loss + args.attention_weight * a_loss
            self.last_attention = a_loss.detach()
        if batches.recheck is not None:
            rc_batch = batches.recheck
            with self.autocast():
                rc_out = self.model(**model_inputs(rc_batch, self.device, self.accepts_mm))
            rc_loss, _ = weighted_loss(
                rc_out.logits, rc_batch["labels"].to(self.device), rc_batch["weights"]
            )
            loss = loss + args.recheck_weight * rc_loss
            self.last_recheck = rc_loss.detach()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        st["step"] += 1
        st["image_index"] += batches.images
        st["samples"] += batches.samples
        return float(loss.detach())

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast of the forward passes with --bf16 (weights and optimizer stay fp32)."""
        if not self.args.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def evaluate(self, train_loss: float) -> dict:
        """Val loss, export, constrained-decoding Acc@0.5; ship when best."""
        st, args = self.state, self.args
        val_loss, val_digit = teacher_forced_loss(
            self.model, self.encoder, self.val_tf, self.device
        )
        _, probe_digit = teacher_forced_loss(self.model, self.encoder, self.probe, self.device)
        last = export(self.model, self.base, self.out / "last")
        row = {
            "step": st["step"],
            "samples": st["samples"],
            "minutes": st["train_s"] / 60,
            "max_objects": self.max_objects(),
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_digit_loss": val_digit,
            "probe_digit_loss": probe_digit,
            "val_acc": 0.0,
            "val_parse": 0.0,
            "probe_acc": 0.0,
            "const_acc": self.const_acc,
        }
        if args.gen_eval:
            val = generate_acc(last, self.val)
            probe = generate_acc(last, self.probe)
            row.update(
                val_acc=val["acc"],
                val_parse=val["parse"],
                val_distinct=val["distinct"],
                probe_acc=probe["acc"],
                probe_distinct=probe["distinct"],
                example=probe["example"],
            )
        if self.recheck_val:
            row["recheck_auroc"], row["recheck_acc"] = recheck_scores(
                self.model, self.encoder, self.recheck_val, self.device
            )
        if self.point_tf:
            _, row["val_point_digit_loss"] = teacher_forced_loss(
                self.model, self.encoder, self.point_tf, self.device
            )
        if self.point_recheck_val:
            row["point_recheck_auroc"], row["point_recheck_acc"] = recheck_scores(
                self.model, self.encoder, self.point_recheck_val, self.device
            )
        key = [row["val_acc"], row["probe_acc"], -val_digit]
        row["best"] = st["best"] is None or key > st["best"]
        if row["best"]:
            st["best"] = key
            best = self.out / "best"
            if best.exists():
                shutil.rmtree(best)
            shutil.copytree(last, best)
            if args.ship_dir:
                ship(best, Path(args.ship_dir))
        st["curve"].append(row)
        with (self.out / "curve.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if args.curve_md:
            meta = {
                "machine": args.machine,
                "n_val": args.n_val,
                "n_probe": args.n_probe,
                "const_acc": self.const_acc,
                "args": self.settings_text(),
                "model": f"Qwen2.5-VL architecture, {self.n_params / 1e6:.1f} M parameters",
            }
            write_curve_md(Path(args.curve_md), st["curve"], meta)
        self.save_state()
        print(
            json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
            flush=True,
        )
        return row

    def settings_text(self) -> str:
        """The levers of this run, for the curve page."""
        a = self.args
        return (
            f"text {a.text_hidden}x{a.text_layers}, vision {a.vision_hidden}x{a.vision_depth},"
            f" max_pixels {a.max_pixels}, fixed size {a.fixed_size or 'no'} "
            f"(first {a.fixed_size_samples or 'all'} samples), batch "
            f"{a.batch_size} images x {a.questions_per_image} questions, lr {a.lr} "
            f"{a.schedule}, digit weight {a.digit_weight}, decision weight "
            f"{a.decision_weight}, think {a.p_think} (weight "
            f"{a.think_weight}), curriculum {a.curriculum_samples} samples, text rope theta "
            f"{a.rope_theta} sections {a.mrope_section or 'default'}, position loss "
            f"{a.position_weight} at layer {a.position_layer}, box loss {a.box_weight} at "
            f"layer {a.box_layer}, dense loss {a.dense_weight} (box at layer {a.dense_layer}),"
            f" attention loss {a.attention_weight} (layer {a.attention_layer} head "
            f"{a.attention_head}), point questions {a.p_point}, point re-check crops "
            f"{a.point_recheck_per_image} per image"
        )

    def save_state(self) -> None:
        """Atomically write OUT/train_state.pt (the resume point)."""
        save_atomically(
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "aux": self.aux.state_dict(),
                "dense": self.dense.state_dict(),
                "state": self.state,
            },
            self.out / "train_state.pt",
        )

    def run(self) -> dict:
        """Train for ``--minutes`` (or ``--max-steps``), evaluating every ``--eval-every-min``."""
        args, st = self.args, self.state
        print(
            f"device {self.device}, {self.n_params / 1e6:.2f} M params, probe constant-box "
            f"Acc@0.5 {self.const_acc:.1%}",
            flush=True,
        )
        deadline = time.time() + args.minutes * 60
        next_eval = time.time() + args.eval_every_min * 60
        next_save = time.time() + 300
        losses: list[float] = []
        row: dict = {}
        steps_here = 0
        stop: list[bool] = []
        # SIGTERM (kill, a scheduler's stop): finish the step, save the resume point, exit.
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        try:
            while (
                time.time() < deadline
                and not stop
                and not (args.max_steps and steps_here >= args.max_steps)
            ):
                self._train_step(losses)
                steps_here += 1
                if time.time() >= next_eval:
                    row = self.evaluate(sum(losses[-50:]) / len(losses[-50:]))
                    next_eval = time.time() + args.eval_every_min * 60
                    next_save = time.time() + 300
                elif time.time() >= next_save:  # bound what a hard kill loses
                    self.save_state()
                    next_save = time.time() + 300
        finally:
            signal.signal(signal.SIGTERM, previous)
            if self.batches is not None:
                self.batches.close()
        if stop:
            self.save_state()
            print(f"stopped by SIGTERM at step {st['step']}; resume with --resume", flush=True)
        elif losses:
            row = self.evaluate(sum(losses[-50:]) / len(losses[-50:]))
        return row

    def _train_step(self, losses: list[float]) -> None:
        """One step with its bookkeeping and progress line."""
        st = self.state
        t0 = time.time()
        loss = self.step()
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {st['step']}")
        st["train_s"] += time.time() - t0
        losses.append(loss)
        if st["step"] % 20 == 0:
            print(
                f"step {st['step']} samples {st['samples']} loss "
                f"{sum(losses[-20:]) / len(losses[-20:]):.4f} "
                f"position {float(self.last_aux[0]):.4f} box {float(self.last_aux[1]):.4f} "
                f"dense {float(self.last_aux[2]):.4f} "
                f"attention {float(self.last_attention):.4f} "
                f"recheck {float(self.last_recheck):.4f} "
                f"max_obj {self.max_objects()} {time.time() - t0:.2f}s/step",
                flush=True,
            )


def with_dense_group(saved: dict, dense: torch.nn.Module) -> dict:
    """Optimizer state saved before the dense heads existed, given their (fresh) group."""
    groups = saved["param_groups"]
    if len(groups) != 1:
        return saved
    start = len(groups[0]["params"])
    ids = list(range(start, start + len(list(dense.parameters()))))
    return {**saved, "param_groups": [*groups, {**groups[0], "params": ids}]}


def main(argv: list[str] | None = None) -> dict:
    """Entry point of ``python -m boxguard.demo.train``."""
    return Trainer(load_args(argv)).run()


if __name__ == "__main__":
    main()
