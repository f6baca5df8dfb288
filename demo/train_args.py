"""Command-line flags of ``python -m boxguard.demo.train`` and what derives from them alone."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from boxguard.server.tiny_checkpoint import TinyConfig

from .train_aux import REGRESSION_LOSSES

# Always taken from the command line on --resume; other flags only when given explicitly.
RESUME_ALWAYS = ("minutes", "max_steps", "resume", "out", "reset_best", "device", "workers")
# Never changed on --resume: they define the architecture and the data stream.
RESUME_FIXED = (
    "text_hidden",
    "text_layers",
    "text_heads",
    "text_kv_heads",
    "text_intermediate",
    "vision_hidden",
    "vision_depth",
    "vision_heads",
    "vision_intermediate",
    "rope_theta",
    "mrope_section",
    "min_pixels",
    "max_pixels",
    "seed",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI flags."""
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The CLI parser."""
    ap = argparse.ArgumentParser(description="Train the boxguard demo checkpoint.")
    ap.add_argument("--out", required=True, help="run directory (state, curve, exports)")
    ap.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of this call")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: none)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    ap.add_argument(
        "--reset-best",
        action="store_true",
        help="on --resume, forget the best eval so far (e.g. after changing levers)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--init-from",
        default="",
        help="start from these weights (e.g. demo/checkpoint), fresh optimizer",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast of forward passes (GPU; fp32 weights and optimizer)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes that draw, render and encode batches ahead (0: inline)",
    )
    # model size (TinyConfig)
    ap.add_argument("--text-hidden", type=int, default=256)
    ap.add_argument("--text-layers", type=int, default=4)
    ap.add_argument("--text-heads", type=int, default=4)
    ap.add_argument("--text-kv-heads", type=int, default=2)
    ap.add_argument("--text-intermediate", type=int, default=768)
    ap.add_argument("--vision-hidden", type=int, default=192)
    ap.add_argument("--vision-depth", type=int, default=4)
    ap.add_argument("--vision-heads", type=int, default=3)
    ap.add_argument("--vision-intermediate", type=int, default=576)
    ap.add_argument("--rope-theta", type=float, default=1000000.0, help="text rotary base")
    ap.add_argument(
        "--mrope-section",
        default="",
        help="rotary frequencies per (t,h,w) axis, e.g. 2,15,15 (default 1:1.5:1.5)",
    )
    ap.add_argument("--min-pixels", type=int, default=56 * 56)
    ap.add_argument(
        "--max-pixels",
        type=int,
        default=224 * 224,
        help="model-frame pixel cap stored in the checkpoint (serving uses it too)",
    )
    # optimisation
    ap.add_argument("--batch-size", type=int, default=16, help="images per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    ap.add_argument(
        "--horizon-samples",
        type=int,
        default=400_000,
        help="cosine: samples over which the LR decays to 10%%",
    )
    ap.add_argument("--weight-decay", type=float, default=0.01)
    # data levers
    ap.add_argument("--fixed-size", default="", help="render training scenes at WxH (e.g. 224x224)")
    ap.add_argument(
        "--fixed-size-samples",
        type=int,
        default=0,
        help="use --fixed-size only for the first N samples (0: always)",
    )
    ap.add_argument("--questions-per-image", type=int, default=1)
    ap.add_argument("--p-think", type=float, default=0.3)
    ap.add_argument("--p-multiple", type=float, default=0.1)
    ap.add_argument("--digit-weight", type=float, default=1.0, help="loss weight of digit tokens")
    ap.add_argument(
        "--decision-weight",
        type=float,
        default=1.0,
        help="loss weight of an answer's first token (box or no target)",
    )
    ap.add_argument("--think-weight", type=float, default=1.0, help="loss weight of think text")
    ap.add_argument(
        "--position-weight",
        type=float,
        default=0.0,
        help="weight of the auxiliary image-token position loss (0: off)",
    )
    ap.add_argument(
        "--position-layer",
        type=int,
        default=1,
        help="text-model layer whose output the position probe reads",
    )
    ap.add_argument(
        "--box-weight",
        type=float,
        default=0.0,
        help="weight of the auxiliary target-box regression loss (0: off)",
    )
    ap.add_argument(
        "--box-layer",
        type=int,
        default=-2,
        help="text-model hidden state the box probe reads (-2: input of last layer)",
    )
    ap.add_argument(
        "--dense-weight",
        type=float,
        default=0.0,
        help="weight of the dense per-cell class/edge/box losses (0: off)",
    )
    ap.add_argument(
        "--dense-layer",
        type=int,
        default=2,
        help="text-model hidden state whose image tokens regress their object's box",
    )
    ap.add_argument(
        "--regression-loss",
        choices=sorted(REGRESSION_LOSSES),
        default="mse",
        help="error of the position, box and dense regressions",
    )
    ap.add_argument(
        "--attention-weight",
        type=float,
        default=0.0,
        help="weight of the loss that makes one head attend to the target (0: off)",
    )
    ap.add_argument(
        "--attention-layer",
        type=int,
        default=2,
        help="text layer whose head --attention-head is supervised",
    )
    ap.add_argument("--attention-head", type=int, default=0)
    ap.add_argument(
        "--attention-first-weight",
        type=float,
        default=1.0,
        help="weight of each box's first digit in the attention loss (others 1)",
    )
    ap.add_argument(
        "--recheck-per-image",
        type=int,
        default=0,
        help="visual re-check crops (yes/no rows) drawn per training image (0: off)",
    )
    ap.add_argument(
        "--recheck-weight",
        type=float,
        default=1.0,
        help="weight of the re-check rows' loss against the grounding loss",
    )
    ap.add_argument(
        "--recheck-positive",
        type=float,
        default=0.5,
        help="share of re-check crops on the target (IoU 0.5-1); others are wrong",
    )
    ap.add_argument(
        "--p-point",
        type=float,
        default=0.0,
        help="share of grounding questions asked in point mode (the server's output=point "
        "prompt, answered with the truth box's centre as point_2d; 0: off)",
    )
    ap.add_argument(
        "--point-recheck-per-image",
        type=int,
        default=0,
        help="point re-check crops (yes/no rows, the crop centred on a point) drawn per "
        "training image, in the re-check batch (0: off)",
    )
    ap.add_argument(
        "--n-recheck-val",
        type=int,
        default=300,
        help="fixed val re-check rows scored (AUROC of P(yes)) at each eval",
    )
    ap.add_argument(
        "--extra-data",
        default="",
        help="a `boxguard export` directory whose train rows join each step (demo/train_export.py)",
    )
    ap.add_argument("--extra-format", default="llamafactory", help="the export's format")
    ap.add_argument(
        "--extra-per-step", type=int, default=4, help="export rows added to each grounding batch"
    )
    ap.add_argument(
        "--curriculum-samples",
        type=int,
        default=0,
        help="samples over which max objects grows 1 -> 6 (0: always 1-6)",
    )
    # eval / outputs
    ap.add_argument("--eval-every-min", type=float, default=8.0)
    ap.add_argument("--n-val", type=int, default=50)
    ap.add_argument("--n-probe", type=int, default=50)
    ap.add_argument(
        "--no-gen-eval",
        dest="gen_eval",
        action="store_false",
        help="skip constrained-decoding Acc@0.5 (tests)",
    )
    ap.add_argument("--ship-dir", default="", help="copy improved checkpoints here")
    ap.add_argument("--curve-md", default="", help="rewrite this learning-curve page")
    ap.add_argument("--machine", default="2-core CPU")
    return ap


def tiny_config(args: argparse.Namespace) -> TinyConfig:
    """The architecture sizes of this run."""
    return TinyConfig(
        text_hidden=args.text_hidden,
        text_layers=args.text_layers,
        text_heads=args.text_heads,
        text_kv_heads=args.text_kv_heads,
        text_intermediate=args.text_intermediate,
        vision_hidden=args.vision_hidden,
        vision_depth=args.vision_depth,
        vision_heads=args.vision_heads,
        vision_intermediate=args.vision_intermediate,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        seed=args.seed,
        rope_theta=args.rope_theta,
        mrope_section=parse_section(args.mrope_section),
    )


def parse_section(text: str) -> tuple[int, int, int] | None:
    """'2,15,15' -> (2, 15, 15); '' -> None (Qwen's default split)."""
    if not text:
        return None
    t, h, w = (int(v) for v in text.split(","))
    return t, h, w


def parse_size(text: str) -> tuple[int, int] | None:
    """'224x224' -> (224, 224); '' -> None."""
    if not text:
        return None
    w, h = text.lower().split("x")
    return int(w), int(h)


def lr_at(args: argparse.Namespace, step: int, samples: int) -> float:
    """Linear warmup, then constant or cosine (to 10%) over the sample horizon."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    if args.schedule == "constant":
        return args.lr
    frac = min(1.0, samples / max(args.horizon_samples, 1))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def load_args(argv: list[str] | None) -> argparse.Namespace:
    """CLI args; on --resume, the saved run args, overridden by flags given explicitly."""
    parser = build_parser()
    args = parser.parse_args(argv)
    saved = Path(args.out) / "run_args.json"
    if args.resume and saved.is_file():
        # argparse fills only attributes the namespace lacks: what stays unset was not given.
        unset = object()
        given = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(vars(args), unset)))
        merged = {**vars(args), **json.loads(saved.read_text())}
        for key, value in vars(given).items():
            if key in RESUME_ALWAYS or (value is not unset and key not in RESUME_FIXED):
                merged[key] = getattr(args, key)
        args = argparse.Namespace(**merged)
    return args
