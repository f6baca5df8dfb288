"""The guarantee on real Qwen2.5-VL answers (bench/data/real-outputs) with text-only signals.

Those logs hold no token logprobs and the images are not here, so there is no confidence and
no P(yes): what calibration can certify with them is the checks' vetoes alone (the "checks
only" path). 500 random half/half splits: the share whose test risk exceeds alpha stays within
delta, up to sampling error (3 binomial s.e. of 500 splits, 0.04).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from boxguard.clients.calibration import (
    calibrate_scores,
    load_signal_rows,
    paths,
    smallest_certifiable_risk,
    wrong_mask,
)
from boxguard.clients.offline import evaluate_outputs, load_outputs

LOGS = Path(__file__).resolve().parents[3] / "bench" / "data" / "real-outputs"
FILES = ("rec__grpo-ckpt100__refcoco_val.json.gz", "gui__grpo-ckpt200__screenspot_web.json.gz")
DELTA = 0.1


def _signals(name: str) -> list:
    """Each stored answer's signals, as `boxguard eval --outputs` records them."""
    records = evaluate_outputs(load_outputs(LOGS / name))
    return load_signal_rows(r.signals() for r in records)


@pytest.fixture(scope="module", params=FILES)
def recorded(request: pytest.FixtureRequest) -> tuple[str, list]:
    return request.param, _signals(request.param)


def test_text_only_signals_calibrate_the_vetoes_alone(recorded: tuple[str, list]) -> None:
    _, signals = recorded
    path_list = paths(signals)
    assert path_list and {p.signal for p in path_list} == {"gates"}
    # The vetoes lower the risk little (bench/results/calibration.md): the smallest certifiable
    # risk is just above the raw answers' own error rate.
    smallest = smallest_certifiable_risk(signals, DELTA)
    assert smallest is not None and smallest >= float(wrong_mask(signals).mean())


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2, 0.6])
def test_guarantee_on_real_answers(recorded: tuple[str, list], alpha: float) -> None:
    _, signals = recorded
    path_list = paths(signals)
    scores = [p.scores(signals) for p in path_list]
    wrong = wrong_mask(signals)
    rng = np.random.default_rng(0)
    exceed = 0
    for _ in range(500):
        order = rng.permutation(len(wrong))
        cal, test = order[: len(order) // 2], order[len(order) // 2 :]
        choice = calibrate_scores([s[cal] for s in scores], wrong[cal], path_list, alpha, DELTA)
        if not choice.certified:
            continue
        score = scores[[p.name for p in path_list].index(choice.path)][test]
        taken = score >= 0
        exceed += (taken & wrong[test]).sum() / max(1, taken.sum()) > alpha
    assert exceed / 500 <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / 500)
