"""The demo checkpoint's visual re-check through a real server: measure, calibrate, time.

``measure`` grounds a split with every box re-checked and nothing abstaining (``visual_min_yes``
0, ``min_confidence`` 0) and writes, per sample, P(yes) of the re-check and whether the raw
answer was right; with ``--output point`` the server is asked for points and a point is right
when it lies in the truth box (the re-check then crops around the point). ``calibrate`` picks
``visual_min_yes`` on such a file (a validation split, never test) with
``guards.threshold.pick_threshold``, and ``accept_no_object`` from whether the model's no-object
answers there are right often enough (risk <= the same target). ``score`` reads ``boxguard
eval`` samples (the checkpoint's own policy) into the issue's figures. ``latency`` times
/ground p50 with the re-check off and on, on one server. Example::

    python bench/demo_recheck.py measure --server URL --data shapes/val.jsonl --out val.jsonl
    python bench/demo_recheck.py measure --server URL --data shapes/val.jsonl --out pt.jsonl \
        --output point
    python bench/demo_recheck.py calibrate val.jsonl --target-risk 0.1
    python bench/demo_recheck.py score eval-test/samples.jsonl --measured test.jsonl
    python bench/demo_recheck.py latency --server URL --data shapes/test.jsonl -n 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from boxguard.clients import Client
from boxguard.clients.datasets import load_dataset
from boxguard.clients.evaluation import evaluate
from boxguard.guards.threshold import Outcome, auroc, pick_threshold
from boxguard.guards.types import OutputMode

# Every box is re-checked and none abstains: P(yes) of every raw answer is recorded.
MEASURE_POLICY = {
    "visual_check": True,
    "visual_min_yes": 0.0,
    "min_confidence": 0.0,
    "accept_no_object": True,
    "self_consistency_k": 0,
}


def measure(
    server: str,
    data: Path,
    out: Path,
    concurrency: int,
    samples_k: int = 0,
    output: OutputMode = "box",
) -> dict[str, Any]:
    """P(yes), self-consistency agreement (with `samples_k` samples) and raw correctness (a box
    at IoU > 0.5, a point in the truth box) of every sample of `data`, written to `out` (JSONL)."""
    samples = load_dataset(data)
    policy = {
        **MEASURE_POLICY,
        "self_consistency_k": samples_k,
        "self_consistency_min_agreement": 0.0,
    }
    with Client(server, timeout=600) as client:
        records = evaluate(samples, client, concurrency=concurrency, policy=policy, output=output)
    rows = []
    for rec in records:
        checks = {c.name: c for c in rec.result.checks} if rec.result else {}
        visual = checks.get("visual_check")
        agreement = checks.get("self_consistency") if samples_k else None
        rows.append(
            {
                "id": rec.sample.id,
                "has_target": rec.sample.has_target,
                "raw_correct": rec.raw_correct,
                "iou": rec.iou,
                "has_box": bool(rec.result and rec.result.candidates),
                "p_yes": visual.score if visual is not None else None,
                "agreement": agreement.score if agreement is not None else None,
                "error": rec.status == "error",
            }
        )
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return summarize_measured(rows)


def summarize_measured(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """AUROC of P(yes) right vs wrong raw boxes, raw Acc@0.5 (target present) and the share of
    right boxes a P(yes) threshold keeps at 10 % risk among the boxes it accepts."""
    boxed = [r for r in rows if r["has_box"] and r["p_yes"] is not None]
    targets = [r for r in rows if r["has_target"]]
    right = [r["p_yes"] for r in boxed if r["raw_correct"]]
    threshold = pick_threshold(
        [Outcome(r["p_yes"], bool(r["raw_correct"])) for r in boxed], "risk", target_risk=0.1
    )
    return {
        "n": len(rows),
        "errors": sum(r["error"] for r in rows),
        "raw_acc_target": sum(r["raw_correct"] for r in targets) / max(len(targets), 1),
        "n_target": len(targets),
        "auroc_p_yes": auroc([r["p_yes"] for r in boxed], [r["raw_correct"] for r in boxed]),
        "n_boxed": len(boxed),
        "n_right_boxed": len(right),
        # Chosen on the rows it scores: compares checkpoints on one split, not a test figure.
        "right_kept_at_risk_0.1": sum(p >= threshold for p in right) / max(len(right), 1),
    }


def calibrate(measured: Path, target_risk: float, write: Path | None) -> dict[str, Any]:
    """visual_min_yes (lowest P(yes) with accepted risk <= target) and accept_no_object from
    measured rows; with `write`, the checkpoint's recommended policy file is written there."""
    rows = [json.loads(line) for line in measured.read_text().splitlines()]
    outcomes = [Outcome(r["p_yes"], bool(r["raw_correct"]), r["error"]) for r in rows]
    threshold = pick_threshold(outcomes, "risk", target_risk=target_risk)
    phi10 = pick_threshold(outcomes, "phi10")
    # A no-object answer has no box to re-check: accept them only if they are right often enough.
    empties = [r for r in rows if not r["has_box"] and not r["error"]]
    empty_right = sum(bool(r["raw_correct"]) for r in empties)
    empty_risk = 1 - empty_right / len(empties) if empties else 0.0
    accept_no_object = empty_risk <= target_risk
    if write is not None:
        policy = {
            "_comment": f"visual_min_yes: pick_threshold(risk <= {target_risk:g}) on P(yes) of "
            f"{len(rows)} {measured.stem} samples; accept_no_object: no-object "
            f"answers right {empty_right} of {len(empties)} there "
            f"(bench/demo_recheck.py); recalibrate whenever the checkpoint changes",
            "visual_check": True,
            "visual_min_yes": round(threshold, 4),
            "accept_no_object": accept_no_object,
        }
        write.write_text(json.dumps(policy, indent=2) + "\n")
    return {
        "visual_min_yes": threshold,
        "phi10_threshold": phi10,
        "target_risk": target_risk,
        "n": len(rows),
        "no_object_answers": len(empties),
        "no_object_right": empty_right,
        "accept_no_object": accept_no_object,
    }


def score(samples_jsonl: Path, measured: Path | None) -> dict[str, Any]:
    """The issue's figures from a ``boxguard eval`` report (+ AUROC from a measured file)."""
    rows = [json.loads(line) for line in samples_jsonl.read_text().splitlines()]
    target = [r for r in rows if r["bbox"] is not None]
    no_target = [r for r in rows if r["bbox"] is None]
    accepted = [r for r in rows if r["status"] == "accepted"]
    right_raw = [r for r in target if r["raw_correct"]]
    out = {
        "n": len(rows),
        "n_target": len(target),
        "n_no_target": len(no_target),
        "raw_acc_target": len(right_raw) / max(len(target), 1),
        "right_raw_accepted": sum(r["status"] == "accepted" for r in right_raw)
        / max(len(right_raw), 1),
        "n_right_raw": len(right_raw),
        "accepted": len(accepted),
        "precision_accepted": sum(r["correct"] for r in accepted) / max(len(accepted), 1),
        "n_acc": sum(
            r["status"] == "abstained" or (r["status"] == "accepted" and not r["detections"])
            for r in no_target
        )
        / max(len(no_target), 1),
        "errors": sum(r["status"] == "error" for r in rows),
    }
    if measured is not None:
        out.update(
            {
                f"measured_{k}": v
                for k, v in summarize_measured(
                    [json.loads(line) for line in measured.read_text().splitlines()]
                ).items()
            }
        )
    return out


def latency(server: str, data: Path, n: int) -> dict[str, Any]:
    """Sequential /ground p50 (ms) on the first n samples, re-check off and on, one server."""
    samples = load_dataset(data)[:n]
    times: dict[str, list[float]] = {"off": [], "on": []}
    with Client(server, timeout=600) as client:
        client.ground(samples[0].image, samples[0].expression)  # warm-up
        for sample in samples:
            for mode in ("off", "on"):  # interleaved: load drifts hit both alike
                policy = {"visual_check": mode == "on", "visual_min_yes": 0.0}
                t0 = time.perf_counter()
                client.ground(sample.image, sample.expression, policy=policy)
                times[mode].append((time.perf_counter() - t0) * 1000)
    p50 = {mode: statistics.median(values) for mode, values in times.items()}
    return {
        "n": len(samples),
        "p50_off_ms": p50["off"],
        "p50_on_ms": p50["on"],
        "ratio": p50["on"] / p50["off"],
    }


def main(argv: list[str] | None = None) -> None:
    """CLI (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--server", required=True)
    m.add_argument("--data", type=Path, required=True)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--concurrency", type=int, default=4)
    m.add_argument(
        "--samples",
        type=int,
        default=0,
        help="also record self-consistency agreement of this many samples",
    )
    m.add_argument(
        "--output",
        choices=("box", "point"),
        default="box",
        help="ask for boxes or points (a point is right in the truth box)",
    )
    c = sub.add_parser("calibrate")
    c.add_argument("measured", type=Path)
    c.add_argument("--target-risk", type=float, default=0.1)
    c.add_argument("--write", type=Path, help="write the policy file here (demo/checkpoint/...)")
    s = sub.add_parser("score")
    s.add_argument("samples", type=Path)
    s.add_argument("--measured", type=Path)
    t = sub.add_parser("latency")
    t.add_argument("--server", required=True)
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("-n", type=int, default=30)
    args = ap.parse_args(argv)
    if args.cmd == "measure":
        result = measure(
            args.server, args.data, args.out, args.concurrency, args.samples, args.output
        )
    elif args.cmd == "calibrate":
        result = calibrate(args.measured, args.target_risk, args.write)
    elif args.cmd == "score":
        result = score(args.samples, args.measured)
    else:
        result = latency(args.server, args.data, args.n)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
