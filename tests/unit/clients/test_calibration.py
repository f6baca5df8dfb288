"""`boxguard calibrate`'s statistics: exact p-values, fixed-sequence testing, the choice, and a
simulation of the guarantee over recorded demo-world signals and a world of known risk."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from boxguard.clients.calibration import (
    GRID,
    Choice,
    ThresholdPath,
    calibrate,
    calibrate_scores,
    load_signal_rows,
    load_signals,
    paths,
    policy_document,
    smallest_certifiable_risk,
    wrong_mask,
)
from boxguard.clients.risk_bounds import (
    binom_cdf,
    binomial_p_value,
    clopper_pearson,
    fixed_sequence,
    min_accepted,
    upper_bound,
)
from boxguard.guards.policy import Policy

DEMO_VAL = Path(__file__).parents[2] / "data" / "calibration" / "demo_val600_signals.jsonl"


def test_binomial_tail_by_hand() -> None:
    # P(Bin(5, 0.2) <= 1) = 0.8^5 + 5 * 0.2 * 0.8^4 = 0.32768 + 0.4096
    assert binom_cdf(1, 5, 0.2) == pytest.approx(0.73728, abs=1e-12)
    assert binom_cdf(0, 10, 0.1) == pytest.approx(0.9**10, abs=1e-12)
    assert binom_cdf(10, 10, 0.3) == 1.0 and binom_cdf(-1, 10, 0.3) == 0.0
    # Large n stays exact in log space: against a direct sum with exact integers.
    exact = sum(math.comb(2000, i) * 3**i * 7 ** (2000 - i) for i in range(181)) / 10**2000
    assert binom_cdf(180, 2000, 0.3) == pytest.approx(exact, rel=1e-9)


def test_p_value_is_the_lower_tail_at_alpha() -> None:
    # 2 wrong of 40 accepted at alpha 0.2: P(Bin(40, 0.2) <= 2)
    by_hand = sum(math.comb(40, i) * 0.2**i * 0.8 ** (40 - i) for i in range(3))
    assert binomial_p_value(2, 40, 0.2) == pytest.approx(by_hand, rel=1e-12)
    assert binomial_p_value(0, 0, 0.1) == 1.0  # nothing accepted: no evidence


def test_bounds() -> None:
    assert upper_bound(0, 22, 0.1) == pytest.approx(1 - 0.1 ** (1 / 22), abs=1e-9)
    low, high = clopper_pearson(5, 10)  # the textbook 95% interval
    assert (round(low, 4), round(high, 4)) == (0.1871, 0.8129)
    assert min_accepted(0.1, 0.1, ratio=0.0) == 22 and 0.9**22 <= 0.1 < 0.9**21
    # 1 wrong (half of 0.1, rounded down) of 38 certifies 0.1; 1 of 37 does not
    assert min_accepted(0.1, 0.1) == 38
    assert binom_cdf(1, 38, 0.1) <= 0.1 < binom_cdf(1, 37, 0.1)


def test_fixed_sequence_stops_at_the_first_failure() -> None:
    assert fixed_sequence([0.01, 0.04, 0.2, 0.01], 0.05) == 2
    assert fixed_sequence([0.2, 0.01], 0.1) == 0
    assert fixed_sequence([], 0.1) == 0

    def gen():  # consumed lazily: nothing after the first failure is computed
        yield 0.01
        yield 0.5
        raise AssertionError("read past the first failure")

    assert fixed_sequence(gen(), 0.1) == 1


def _rows(n: int, p_yes, correct) -> list[dict]:
    return [
        {
            "id": str(i),
            "has_target": True,
            "has_box": True,
            "correct": correct(i),
            "confidence": None,
            "p_yes": p_yes(i),
            "checks": {},
        }
        for i in range(n)
    ]


def test_the_choice_by_hand() -> None:
    # 200 boxes, P(yes) i/200; the top half all right, the bottom half right 1 in 4.
    signals = load_signal_rows(_rows(200, lambda i: i / 200, lambda i: i >= 100 or i % 4 == 0))
    assert [p.name for p in paths(signals)] == [
        "visual_min_yes, accept_no_object false",
        "visual_min_yes, accept_no_object true",
    ]
    choice = calibrate(signals, alpha=0.1, delta=0.1)
    # delta 0.05 per path; at P(yes) >= 0.5: 100 accepted, 0 wrong, p = 0.9^100. At 0.45: 110
    # accepted, 8 wrong, p = P(Bin(110, 0.1) <= 8) = 0.22 > 0.05: the sequence stops.
    assert binomial_p_value(8, 110, 0.1) > 0.05
    assert choice.certified and choice.fields["visual_min_yes"] == 0.5
    assert (choice.accepted, choice.errors, choice.coverage) == (100, 0, 0.5)


def test_a_strict_prefix_that_cannot_certify_is_passed_over() -> None:
    # Too few accepted to ever reach delta: the first tested point is the first with n_min.
    signals = load_signal_rows(_rows(200, lambda i: 0.96 if i < 100 else 0.1, lambda i: i < 100))
    choice = calibrate(signals, alpha=0.1, delta=0.1)
    first = max(t for t in GRID if t <= 0.96)  # 1 - 10^-1.3: the first point accepting any
    assert choice.certified and choice.fields["visual_min_yes"] == first
    assert choice.accepted == 100 and choice.errors == 0


def test_nothing_certified_is_said_plainly() -> None:
    # 30% wrong whatever P(yes) says: 0.1 is out of reach, about 0.35 is not.
    signals = load_signal_rows(_rows(400, lambda i: i / 400, lambda i: i % 10 >= 3))
    choice = calibrate(signals, alpha=0.1, delta=0.1)
    assert not choice.certified and choice.coverage == 0.0 and choice.fields == {}
    smallest = smallest_certifiable_risk(signals, 0.1)
    assert smallest is not None and 0.3 < smallest < 0.6  # the sequence stops early on 0.3
    with pytest.raises(ValueError, match="no risk level is certified"):
        policy_document([choice], model={"name": "m", "family": None}, data="d", date="x")


def test_no_object_answers_and_other_checks() -> None:
    rows = _rows(60, lambda i: 0.99, lambda i: True)
    rows += [
        {
            "id": f"e{i}",
            "has_target": False,
            "has_box": False,
            "correct": i > 0,
            "confidence": 0.9,
            "p_yes": None,
            "checks": {"cardinality": True},
        }
        for i in range(40)
    ]
    rows[0]["checks"] = {"label_match": False}  # a vetoing check: never accepted
    rows[1]["correct"] = False
    signals = load_signal_rows(rows)
    p_off = ThresholdPath("p_yes", accept_no_object=False).scores(signals)
    p_on = ThresholdPath("p_yes", accept_no_object=True).scores(signals)
    assert p_off[0] == -np.inf and p_off[1] == 0.99 and p_off[60] == -np.inf
    assert p_on[60] == np.inf  # a [] answer has no box to re-check: accepted with the flag
    assert list(wrong_mask(signals)[[1, 60, 61]]) == [True, True, False]


def _text_rows(n: int, wrong: set[int], label_fails: set[int], think_fails: set[int]):
    """Boxes of P(yes) 0.99 whose label and think verdicts are given by index."""
    return [
        {
            "id": str(i),
            "has_target": True,
            "has_box": True,
            "correct": i not in wrong,
            "confidence": None,
            "p_yes": 0.99,
            "checks": {
                "label_match": i not in label_fails,
                "think_consistency": i not in think_fails,
            },
        }
        for i in range(n)
    ]


def test_a_text_veto_that_removes_wrong_answers_stays_fatal() -> None:
    # 60 of 300 answers wrong (20%), and label_match refuses exactly those: with the veto 240
    # are accepted with none wrong; without it risk 0.1 cannot be certified.
    wrong = set(range(0, 300, 5))
    signals = load_signal_rows(_text_rows(300, wrong, label_fails=wrong, think_fails=set()))
    assert len(paths(signals)) == 4  # P(yes) x accept_no_object x label_match fatal or not
    choice = calibrate(signals, alpha=0.1, delta=0.1)
    assert choice.certified and (choice.accepted, choice.errors) == (240, 0)
    assert "label_match" in choice.fields["fatal"] and choice.path is not None
    assert "not fatal" not in choice.path


def test_a_text_veto_that_only_refuses_right_answers_is_dropped() -> None:
    # think_consistency refuses 30 right answers and no wrong one; label_match refuses 20 of
    # the 25 wrong ones. Kept: label_match fatal, think_consistency reporting only.
    wrong = set(range(0, 250, 10))
    label = set(sorted(wrong)[:20])
    think = set(range(1, 300, 10))
    signals = load_signal_rows(_text_rows(300, wrong, label_fails=label, think_fails=think))
    assert len(paths(signals)) == 8
    choice = calibrate(signals, alpha=0.1, delta=0.1)
    # all fatal: 250 accepted, 5 wrong; think_consistency dropped: 280, 5 (the larger); label
    # dropped too: 300, 25 (8.3%, not certified at delta 0.1 / 8 paths)
    assert choice.certified and (choice.accepted, choice.errors) == (280, 5)
    assert choice.path == "visual_min_yes, accept_no_object false, think_consistency not fatal"
    fatal = choice.fields["fatal"]
    assert "label_match" in fatal and "think_consistency" not in fatal and "format" in fatal
    doc = policy_document([choice], model={"name": "m", "family": None}, data="d", date="x")
    assert Policy(**{k: v for k, v in doc.items() if not k.startswith("_")}).fatal == frozenset(
        fatal
    )


def test_text_vetoes_that_never_fail_add_no_paths() -> None:
    signals = load_signal_rows(_text_rows(100, set(), set(), set()))
    assert len(paths(signals)) == 2
    assert "fatal" not in calibrate(signals, alpha=0.1, delta=0.1).fields


def test_policy_document_holds_every_certified_risk() -> None:
    a = Choice(
        0.1, 0.1, 100, True, {"visual_check": True, "visual_min_yes": 0.9}, "p", 40, 1, 0.09, 4
    )
    b = Choice(0.05, 0.1, 100, False, paths=4)
    doc = policy_document(
        [b, a],
        model={"name": "m", "family": "qwen2_5_vl"},
        data="val.jsonl",
        date="2026-01-01T00:00:00Z",
        smallest=0.08,
    )
    assert doc["visual_min_yes"] == 0.9 and doc["_model"]["name"] == "m"
    assert list(doc["_by_risk"]) == ["0.1"]
    note = doc["_calibration"]
    assert (note["risk"], note["delta"], note["n"], note["coverage"]) == (0.1, 0.1, 100, 0.4)
    assert "Learn then Test" in note["method"] and note["data"] == "val.jsonl"
    assert doc["_not_certified"]["0.05"] == {
        "coverage": 0.0,
        "n": 100,
        "smallest_certifiable_risk": 0.08,
    }


def _simulate(signals_scores, wrong, path_list, alpha, delta, draws, n_cal, rng, truth):
    """Share of calibration draws whose chosen policy's true risk exceeds alpha."""
    exceed = certified = 0
    for _ in range(draws):
        cal, rest = truth.draw(rng, n_cal)
        choice = calibrate_scores(
            [s[cal] for s in signals_scores], wrong[cal], path_list, alpha, delta
        )
        if not choice.certified:
            continue
        certified += 1
        exceed += truth.risk(choice, rest) > alpha
    return exceed / draws, certified / draws


class _Splits:
    """Random calibration/test splits of recorded signals: truth = the test split's risk."""

    def __init__(self, scores, wrong, path_list) -> None:
        self.scores, self.wrong, self.path_list = scores, wrong, path_list

    def draw(self, rng, n_cal):
        order = rng.permutation(len(self.wrong))
        return order[:n_cal], order[n_cal:]

    def risk(self, choice, test) -> float:
        path = next(p for p in self.path_list if p.name == choice.path)
        score = self.scores[self.path_list.index(path)][test]
        t = (
            choice.fields.get("visual_min_yes", 0.0)
            if path.signal == "p_yes"
            else choice.fields["min_confidence"]
        )
        taken = score >= t
        return float((taken & self.wrong[test]).sum() / taken.sum()) if taken.any() else 0.0


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_guarantee_on_recorded_demo_signals(alpha: float) -> None:
    """500 random 400/200 splits of the demo world's 600 val signals (recorded once through the
    server, bench/results/calibration.md): the test risk exceeds alpha in <= delta of the splits,
    up to sampling error (3 binomial s.e. of 500 splits, 0.04) and the test split's own noise."""
    signals = load_signals(DEMO_VAL)
    path_list = paths(signals)
    scores = [p.scores(signals) for p in path_list]
    wrong = wrong_mask(signals)
    truth = _Splits(scores, wrong, path_list)
    rng = np.random.default_rng(0)
    share, certified = _simulate(scores, wrong, path_list, alpha, 0.1, 500, 400, rng, truth)
    assert share <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / 500)
    if alpha >= 0.2:  # 0.05 and 0.1 are below what this world can certify: always abstains
        assert certified > 0.5


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_guarantee_in_a_world_of_known_risk(alpha: float) -> None:
    """P(yes) ~ U(0, 1) and P(wrong | s) = 0.2 (1 - s), so accepting s >= t has risk exactly
    0.1 (1 - t), no test split needed. 500 calibration draws of 1000: the chosen policy's true
    risk exceeds alpha in at most delta of them, up to 3 binomial s.e. of 500 draws (0.04)."""
    rng = np.random.default_rng(1)
    path_list = [ThresholdPath("p_yes", False), ThresholdPath("p_yes", True)]
    exceed = certified = 0
    for _ in range(500):
        s = rng.random(1000)
        wrong = rng.random(1000) < 0.2 * (1 - s)
        choice = calibrate_scores([s, s], wrong, path_list, alpha, 0.1)
        certified += choice.certified
        exceed += choice.certified and 0.1 * (1 - choice.fields.get("visual_min_yes", 0)) > alpha
    assert exceed / 500 <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / 500)
    assert certified / 500 > 0.5  # and not vacuous: most draws certify a policy


def test_grid_is_strict_to_loose() -> None:
    assert list(GRID) == sorted(GRID, reverse=True) and GRID[0] == 0.9999 and GRID[-1] == 0.0
