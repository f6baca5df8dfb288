"""Experiment: a text-only per-answer risk score on the real outputs (issue 16, item 5).

Fits a logistic regression (numpy, L2) on the dev half (even-indexed answers of the 7 dev files)
to predict a wrong answer from text-only features of the expression, the think trace and the
box, picks the risk threshold with at most 1% of right dev answers above it, and reports on the
held-out answers how many wrong answers that threshold catches and how many right ones it
drops, next to the guards' own verdicts. Not shipped unless it beats the guards on held-out data
(see bench/results/real_outputs.md).

    python bench/risk_experiment.py          # all 9 files
    python bench/risk_experiment.py rec__    # RefCOCO files only
    python bench/risk_experiment.py rec__ --words   # + hashed word uni/bigrams of the
                                                    # expression, the label and the trace

With ``--words`` the L2 strength and the threshold come from out-of-fold risks on the dev half
(two folds by item: one RefCOCO expression answered by four models is one item, never split), then
the score is refit on the whole dev half: held-out data choose nothing.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from boxguard.clients.offline import StoredOutput, evaluate_outputs, load_outputs
from boxguard.guards.lexicon import POSITION_WORDS, known
from boxguard.guards.nouns import analyze, words
from boxguard.guards.parse import parse_output
from boxguard.guards.think import analyze_think
from boxguard.guards.threshold import auroc as threshold_auroc

DATA = Path(__file__).parent / "data" / "real-outputs"
HELD_OUT_FILES = ("rec__grpo-ckpt100", "gui__grpo-ckpt200")
MAX_FALSE_ABSTENTION = 0.01
_HEDGE_RE = re.compile(
    r"\b(?:likely|possibly|perhaps|might|may be|could be|assum\w*|guess|seems?|appears?|"
    r"probably|unclear|ambiguous|not sure|difficult)\b"
)
_NEGATION_RE = re.compile(r"\b(?:no|not|cannot|can't|isn't|aren't|doesn't|don't)\b")
FEATURES = (
    "bias",
    "expr_words",
    "expr_head_known",
    "expr_head_missing",
    "expr_position_words",
    "has_think",
    "think_words",
    "hedges",
    "negations",
    "think_absent",
    "think_select",
    "boxes",
    "log_box_area",
    "box_aspect",
    "box_at_origin",
    "label_restates",
)


def features(stored: StoredOutput) -> list[float]:
    """Text-only features of one answer (no image, no image size)."""
    expr = stored.sample.expression
    toks = words(expr)
    info = analyze(expr)
    parsed = parse_output(stored.output)
    think = (parsed.think or "").lower()
    decision = analyze_think(parsed.think, expr).decision if parsed.think else None
    box = parsed.boxes[0].coords if parsed.boxes else (0.0, 0.0, 1.0, 1.0)
    w, h = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    label = (parsed.boxes[0].label or "").lower() if parsed.boxes else ""
    return [
        1.0,
        math.log1p(len(toks)),
        float(info.head is not None and known(info.head)),
        float(info.head is None or info.generic),
        float(sum(t in POSITION_WORDS for t in toks)),
        float(bool(think)),
        math.log1p(len(think.split())),
        float(len(_HEDGE_RE.findall(think))),
        float(len(_NEGATION_RE.findall(think))),
        float(decision == "absent"),
        float(decision == "select"),
        float(len(parsed.boxes)),
        math.log(w * h),
        math.log(w / h),
        float(box[0] <= 1 or box[1] <= 1),
        float(label.strip(" .") == expr.lower().strip(" .")),
    ]


HASH_DIMS = 1024  # per text field; collisions only blur rare n-grams


def word_features(stored: StoredOutput) -> list[float]:
    """Hashed word unigrams and bigrams of the expression, the first label and the trace."""
    parsed = parse_output(stored.output)
    label = (parsed.boxes[0].label or "") if parsed.boxes else ""
    out = [0.0] * (3 * HASH_DIMS)
    for field, text in enumerate((stored.sample.expression, label, parsed.think or "")):
        toks = words(text.lower())
        for gram in toks + [f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False)]:
            digest = hashlib.blake2b(gram.encode(), digest_size=4).digest()
            out[field * HASH_DIMS + int.from_bytes(digest, "little") % HASH_DIMS] = 1.0
    return out


def item_fold(stored: StoredOutput) -> int:
    """0 or 1 by the item (expression and true box), the same for every model's answer to it."""
    key = f"{stored.sample.expression}|{stored.sample.bbox}".encode()
    return hashlib.blake2b(key, digest_size=1).digest()[0] % 2


def collect(
    dev: bool, prefix: str = "", with_words: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, wrong-answer labels, the guards' abstentions, file names and item folds of the
    dev or held-out set."""
    xs: list[list[float]] = []
    ys: list[float] = []
    guard: list[float] = []
    names: list[str] = []
    folds: list[int] = []
    for path in sorted(DATA.glob(f"{prefix}*.json.gz")):
        held_file = any(name in path.name for name in HELD_OUT_FILES)
        outputs = load_outputs(path)
        if dev:
            if held_file:
                continue
            outputs = outputs[0::2]
        elif not held_file:
            outputs = outputs[1::2]
        for stored, record in zip(outputs, evaluate_outputs(outputs), strict=True):
            if record.result is not None and record.result.candidates:  # parsed answers only
                xs.append(features(stored) + (word_features(stored) if with_words else []))
                ys.append(0.0 if record.raw_correct else 1.0)
                guard.append(1.0 if record.status == "abstained" else 0.0)
                names.append(path.name.split(".")[0])
                folds.append(item_fold(stored))
    return np.array(xs), np.array(ys), np.array(guard), np.array(names), np.array(folds)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 3000) -> Any:
    """Logistic regression by gradient descent on standardized features.

    Only the hand-made features are standardized: a rare hashed n-gram divided by its tiny
    standard deviation would outweigh everything else.
    """
    mean, std = x.mean(0), x.std(0)
    mean[0], std[0] = 0.0, 1.0
    mean[len(FEATURES) :], std[len(FEATURES) :] = 0.0, 1.0
    std[std == 0] = 1.0
    z = (x - mean) / std
    weights = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-z @ weights))
        weights -= 0.5 * (z.T @ (p - y) / len(y) + l2 * weights)
    return lambda data: 1.0 / (1.0 + np.exp(-((data - mean) / std) @ weights))


def auroc(score: np.ndarray, y: np.ndarray) -> float:
    """AUROC of `score` for y = 1 (a wrong answer)."""
    return threshold_auroc(score.tolist(), (y == 1).tolist())


def flagging_threshold(right_risks: np.ndarray) -> float:
    """The risk above which at most MAX_FALSE_ABSTENTION of these right answers lie."""
    ordered = np.sort(right_risks)
    return float(ordered[int(math.ceil((1 - MAX_FALSE_ABSTENTION) * len(ordered))) - 1])


def main() -> None:
    """Fit on dev, report dev and held-out, pooled and per file (argv[1]: a file prefix)."""
    args = [a for a in sys.argv[1:] if a != "--words"]
    with_words = "--words" in sys.argv[1:]
    prefix = args[0] if args else ""
    x_dev, y_dev, _, _, fold_dev = collect(dev=True, prefix=prefix, with_words=with_words)
    x_val, y_val, guard_val, file_val, _ = collect(dev=False, prefix=prefix, with_words=with_words)
    l2 = 1e-2
    if with_words:
        out_of_fold: dict[float, np.ndarray] = {}
        for strength in (1e-1, 1e-2, 1e-3):
            oof = np.zeros(len(y_dev))
            for k in (0, 1):
                inner = fit(x_dev[fold_dev != k], y_dev[fold_dev != k], l2=strength)
                oof[fold_dev == k] = inner(x_dev[fold_dev == k])
            out_of_fold[strength] = oof
        scores = {k: auroc(v, y_dev) for k, v in out_of_fold.items()}
        l2 = max(scores, key=lambda k: scores[k])
        print(
            "dev out-of-fold AUROC by L2:",
            {k: round(v, 3) for k, v in scores.items()},
            "chosen",
            l2,
        )
    risk = fit(x_dev, y_dev, l2=l2)
    dev_risk, val_risk = risk(x_dev), risk(x_val)
    # The threshold is read off risks the score was not fitted on, when there are some.
    calib = out_of_fold[l2] if with_words else dev_risk
    threshold = flagging_threshold(calib[y_dev == 0])
    dev_rows = [("dev out-of-fold", calib, y_dev)] if with_words else [("dev", dev_risk, y_dev)]
    for name, r, y in (*dev_rows, ("held-out", val_risk, y_val)):
        flagged = r > threshold
        print(
            f"{name} pooled: n {len(y)}, wrong {int(y.sum())}, AUROC {auroc(r, y):.3f}, "
            f"right flagged {flagged[y == 0].mean():.2%}, wrong caught "
            f"{flagged[y == 1].mean():.2%}"
        )
    # An upper bound no deployment gets: the threshold read off the held-out answers themselves.
    oracle = flagging_threshold(val_risk[y_val == 0])
    print(
        f"held-out, threshold picked on held-out itself (1% right flagged): wrong caught "
        f"{(val_risk[y_val == 1] > oracle).mean():.2%}"
    )
    needed = np.sort(val_risk[y_val == 1])[::-1][int(math.ceil(0.2 * (y_val == 1).sum())) - 1]
    print(
        f"held-out: catching 20% of the wrong answers flags "
        f"{(val_risk[y_val == 0] >= needed).mean():.2%} of the right ones"
    )
    print("held-out per file: AUROC | risk: right flagged, wrong caught | guards: same")
    for name in sorted(set(file_val)):
        m = file_val == name
        r, y, g = val_risk[m], y_val[m], guard_val[m] == 1
        flagged = r > threshold
        print(
            f"  {name}: AUROC {auroc(r, y):.3f} | {flagged[y == 0].mean():.2%}, "
            f"{flagged[y == 1].mean():.2%} | {g[y == 0].mean():.2%}, {g[y == 1].mean():.2%}"
        )


if __name__ == "__main__":
    main()
