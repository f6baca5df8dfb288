"""visual_check and self_consistency through a fake Verifier (a protocol test)."""

from __future__ import annotations

from boxguard.guards import Policy, Verifier, verify
from boxguard.guards.visual import margined, question_for
from conftest import FakeVerifier

DEMO = "the red circle left of the blue square"
OUT = '[{"bbox_2d": [100, 100, 200, 200], "label": "red circle"}]'


def test_fake_is_a_verifier() -> None:
    assert isinstance(FakeVerifier(), Verifier)


def test_question_and_margin() -> None:
    assert question_for(DEMO) == "Is this a red circle?"
    assert question_for("the orange hexagon") == "Is this an orange hexagon?"
    assert margined((10, 10, 20, 20), 0.5, (22, 100)) == (5, 5, 22, 25)


def test_visual_check_pass_and_fail() -> None:
    fake = FakeVerifier(p_yes=0.9, samples=[OUT] * 4)
    v = verify(OUT, DEMO, (400, 400), verifier=fake)
    assert v.accepted
    assert fake.questions == [((90, 90, 210, 210), "Is this a red circle?")]
    v = verify(OUT, DEMO, (400, 400), verifier=FakeVerifier(p_yes=0.2, samples=[OUT] * 4))
    assert v.reasons == ["visual_check"]


def test_disabled_by_policy() -> None:
    fake = FakeVerifier(p_yes=0.0)
    v = verify(OUT, DEMO, (400, 400), verifier=fake,
               policy=Policy(visual_check=False, self_consistency_k=0))
    assert v.accepted and not fake.questions and not fake.k_asked


def test_verifier_errors_abstain() -> None:
    v = verify(OUT, DEMO, (400, 400), verifier=FakeVerifier(fail=True))
    # The visual re-check failed fatally, so no samples are spent on self-consistency.
    assert v.reasons == ["visual_check"]
    v = verify(OUT, DEMO, (400, 400), verifier=FakeVerifier(fail=True),
               policy=Policy(visual_check=False))
    assert v.reasons == ["self_consistency"] and "backend down" in v.checks[-1].detail


def test_expensive_checks_skipped_after_fatal_failure() -> None:
    fake = FakeVerifier()
    v = verify('[{"bbox_2d": [1, 1, 90, 90], "label": "blue square"}]', DEMO, (400, 400),
               verifier=fake)
    assert v.reasons == ["label_match"] and not fake.questions and not fake.k_asked
    assert "visual_check" not in [c.name for c in v.checks]


def test_self_consistency_agreement() -> None:
    near = '[{"bbox_2d": [105, 100, 205, 198], "label": "circle"}]'
    far = '[{"bbox_2d": [300, 300, 350, 350], "label": "red circle"}]'
    other = '[{"bbox_2d": [100, 100, 200, 200], "label": "square"}]'
    fake = FakeVerifier(samples=[near, near, far, "garbage"])
    v = verify(OUT, DEMO, (400, 400), verifier=fake)
    assert v.accepted and v.checks[-1].score == 0.5 and fake.k_asked == [4]
    fake = FakeVerifier(samples=[far, other, near, "garbage"])
    v = verify(OUT, DEMO, (400, 400), verifier=fake)
    assert v.reasons == ["self_consistency"] and v.checks[-1].score == 0.25


def test_self_consistency_same_frame_as_answer() -> None:
    out = "<|box_start|>(250,250),(500,500)<|box_end|>"
    fake = FakeVerifier(samples=['[{"bbox_2d": [250, 250, 500, 500]}]'] * 4)
    v = verify(out, "the dog", (400, 400), verifier=fake)
    # The samples are read in the answer's frame (relative1000), not as pixels.
    assert v.accepted and v.checks[-1].score == 1.0


def test_self_consistency_no_object() -> None:
    fake = FakeVerifier(samples=["[]", "No Objects", '[{"bbox_2d": [1, 1, 50, 50]}]', "[]"])
    v = verify("[]", "the dog", (400, 400), verifier=fake)
    assert v.accepted and v.checks[-1].score == 0.75
