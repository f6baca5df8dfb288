"""visual_check and self_consistency: prepare() plans the evidence, finish() decides with it."""

from __future__ import annotations

import pytest
from boxguard.guards import Evidence, Policy, Verifier, prepare, verify
from boxguard.guards.visual import margined, question_for
from guards_support import FakeVerifier

DEMO = "the red circle left of the blue square"
OUT = '[{"bbox_2d": [100, 100, 200, 200], "label": "red circle"}]'
# Both model-backed checks on (they are off by default: each costs model calls).
ON = Policy(visual_check=True, self_consistency_k=4)


def test_fake_is_a_verifier() -> None:
    assert isinstance(FakeVerifier(), Verifier)


def test_question_and_margin() -> None:
    assert question_for(DEMO) == "Is this a red circle?"
    assert question_for("the orange hexagon") == "Is this an orange hexagon?"
    assert margined((10, 10, 20, 20), 0.5, (22, 100)) == (5, 5, 22, 25)


def test_question_for_asks_about_one_object_of_a_plural() -> None:
    assert question_for("the red circles") == "Is this a red circle?"
    assert question_for("all the buses near the tree") == "Is this a bus?"
    assert question_for("the people on the left") == "Is this a person?"


def test_visual_check_pass_and_fail() -> None:
    fake = FakeVerifier(p_yes=0.9, samples=[OUT] * 4)
    v = verify(OUT, DEMO, (400, 400), verifier=fake, policy=ON)
    assert v.accepted
    assert fake.questions == [((90, 90, 210, 210), "Is this a red circle?")]
    v = verify(
        OUT, DEMO, (400, 400), verifier=FakeVerifier(p_yes=0.2, samples=[OUT] * 4), policy=ON
    )
    assert v.reasons == ["visual_check"]


def test_disabled_by_policy() -> None:
    fake = FakeVerifier(p_yes=0.0)
    v = verify(
        OUT,
        DEMO,
        (400, 400),
        verifier=fake,
        policy=Policy(visual_check=False, self_consistency_k=0),
    )
    assert v.accepted and not fake.questions and not fake.k_asked


def test_verifier_errors_propagate_never_abstain() -> None:
    # An unreachable model is the caller's error to report, not a verdict on the answer.
    with pytest.raises(RuntimeError, match="backend down"):
        verify(OUT, DEMO, (400, 400), verifier=FakeVerifier(fail=True), policy=ON)
    with pytest.raises(RuntimeError, match="backend down"):
        verify(
            OUT,
            DEMO,
            (400, 400),
            verifier=FakeVerifier(fail=True),
            policy=Policy(visual_check=False, self_consistency_k=4),
        )


def test_expensive_checks_skipped_after_fatal_failure() -> None:
    fake = FakeVerifier()
    v = verify(
        '[{"bbox_2d": [1, 1, 90, 90], "label": "blue square"}]',
        DEMO,
        (400, 400),
        verifier=fake,
        policy=ON,
    )
    assert v.reasons == ["label_match"] and not fake.questions and not fake.k_asked
    assert "visual_check" not in [c.name for c in v.checks]


def test_self_consistency_agreement() -> None:
    near = '[{"bbox_2d": [105, 100, 205, 198], "label": "circle"}]'
    far = '[{"bbox_2d": [300, 300, 350, 350], "label": "red circle"}]'
    other = '[{"bbox_2d": [100, 100, 200, 200], "label": "square"}]'
    fake = FakeVerifier(samples=[near, near, far, "garbage"])
    v = verify(OUT, DEMO, (400, 400), verifier=fake, policy=ON)
    assert v.accepted and v.checks[-1].score == 0.5 and fake.k_asked == [4]
    fake = FakeVerifier(samples=[far, other, near, "garbage"])
    v = verify(OUT, DEMO, (400, 400), verifier=fake, policy=ON)
    assert v.reasons == ["self_consistency"] and v.checks[-1].score == 0.25


def test_self_consistency_same_frame_as_answer() -> None:
    out = "<|box_start|>(250,250),(500,500)<|box_end|>"
    fake = FakeVerifier(samples=['[{"bbox_2d": [250, 250, 500, 500]}]'] * 4)
    v = verify(out, "the dog", (400, 400), verifier=fake, policy=ON)
    # The samples are read in the answer's frame (relative1000), not as pixels.
    assert v.accepted and v.checks[-1].score == 1.0


def test_self_consistency_no_object() -> None:
    fake = FakeVerifier(samples=["[]", "No Objects", '[{"bbox_2d": [1, 1, 50, 50]}]', "[]"])
    v = verify("[]", "the dog", (400, 400), verifier=fake, policy=ON)
    assert v.accepted and v.checks[-1].score == 0.75


TWO = (
    '[{"bbox_2d": [100, 100, 200, 200], "label": "red circle"}, '
    '{"bbox_2d": [250, 250, 300, 330], "label": "red circle"}]'
)


def test_plan_asks_every_kept_box_and_k_samples_at_once() -> None:
    plan = prepare(
        TWO,
        "the red circle",
        (400, 400),
        multiple=True,
        policy=Policy(visual_check=True, self_consistency_k=3),
    )
    assert plan.needs_evidence and plan.samples == 3
    assert [c.bbox for c in plan.crops] == [(90, 90, 210, 210), (245, 242, 305, 338)]
    assert {c.question for c in plan.crops} == {"Is this a red circle?"}
    # The cheap checks already ran; the evidence checks are decided only by finish().
    assert [c.name for c in plan.checks][-1] == "confidence"


def test_finish_uses_the_lowest_crop_and_says_which() -> None:
    plan = prepare(
        TWO,
        "the red circle",
        (400, 400),
        multiple=True,
        policy=Policy(visual_check=True, self_consistency_k=0),
    )
    ok = plan.finish(Evidence(yes_probabilities=(0.9, 0.7)))
    assert ok.accepted and ok.checks[-2].score == 0.7
    low = plan.finish(Evidence(yes_probabilities=(0.9, 0.3)))
    assert low.reasons == ["visual_check"] and "0.30 < 0.5" in low.checks[-2].detail
    # finish() is pure: the same plan decides again with other evidence.
    assert plan.finish(Evidence(yes_probabilities=(0.8, 0.8))).accepted


def test_finish_refuses_evidence_that_does_not_answer_the_plan() -> None:
    plan = prepare(TWO, "the red circle", (400, 400), multiple=True, policy=ON)
    with pytest.raises(ValueError, match="2 crops"):
        plan.finish(Evidence(yes_probabilities=(0.9,)))


def test_no_evidence_means_not_applicable() -> None:
    plan = prepare(OUT, DEMO, (400, 400), policy=ON)
    v = plan.finish()
    assert v.accepted
    assert [c.detail for c in v.checks[-2:]] == ["not run: no verifier"] * 2
    assert not any(c.ran for c in v.checks[-2:])


def test_fatal_cheap_failure_plans_no_evidence() -> None:
    plan = prepare(
        '[{"bbox_2d": [1, 1, 90, 90], "label": "blue square"}]', DEMO, (400, 400), policy=ON
    )
    assert not plan.needs_evidence and plan.crops == () and plan.samples == 0
    assert plan.finish().reasons == ["label_match"]


def test_no_object_answer_plans_samples_but_no_crops() -> None:
    plan = prepare("[]", "the dog", (400, 400), policy=ON)
    assert plan.crops == () and plan.samples == 4
    v = plan.finish(Evidence(samples=("[]", "[]", "No Objects", '[{"bbox_2d": [1, 1, 5, 5]}]')))
    assert v.accepted and v.checks[-1].score == 0.75
    assert v.checks[-2].detail == "not run: no boxes"
