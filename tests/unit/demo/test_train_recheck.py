"""Re-check training rows: the server's crop and question, labels by IoU, both answers taught."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from boxguard.demo.dataset import iter_scenes  # noqa: E402
from boxguard.demo.train_data import IGNORE, DataSpec, Encoder  # noqa: E402
from boxguard.demo.train_recheck import (  # noqa: E402
    CropCase,
    crop_cases,
    crop_example,
    fits_question,
    recheck_examples,
)
from boxguard.guards.geometry import iou  # noqa: E402
from boxguard.guards.policy import Policy  # noqa: E402
from boxguard.guards.visual import margined, question_for  # noqa: E402
from boxguard.server.evidence import YES_NO_SUFFIX, crop_box  # noqa: E402
from boxguard.server.models import resize_to_frame  # noqa: E402


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint: Path) -> Encoder:
    return Encoder(tiny_checkpoint, decision_weight=3.0)


def test_a_row_is_the_request_the_servers_visual_check_sends(encoder: Encoder) -> None:
    scene, image, (sample,) = next(
        iter_scenes("val", 0, n_images=1, max_objects=1, no_target_rate=0.0)
    )
    case = CropCase(sample.expression, tuple(sample.bbox), True, "right")
    example = crop_example(image, case, encoder)
    region = image.crop(
        crop_box(margined(case.bbox, Policy().visual_margin, image.size), image.size)
    )
    frame = encoder.adapter.model_frame(*region.size)
    expected = resize_to_frame(region, (frame.width, frame.height))
    assert example.image.tobytes() == expected.tobytes()
    # The trainer's own resize to the model frame leaves the served crop as it is.
    assert encoder.frame_image(example.image).tobytes() == expected.tobytes()
    (question,) = example.questions
    question_text = question_for(sample.expression) + YES_NO_SUFFIX
    assert question.prompt == encoder.adapter.chat(question_text)
    assert question.answer == "yes"
    batch = encoder.encode([example])
    labelled = batch["input_ids"][0][batch["labels"][0] != IGNORE]
    assert encoder.tokenizer.decode(labelled) == "yes<|im_end|>"
    assert "Answer yes or no." in encoder.tokenizer.decode(batch["input_ids"][0])
    # The answer's first token (the one P(yes) is read from) carries the decision weight.
    assert batch["weights"][0][batch["labels"][0] != IGNORE].tolist()[0] == 3.0


def test_labels_follow_iou_with_the_target_and_skip_ambiguous_crops() -> None:
    kinds: Counter[str] = Counter()
    rng = random.Random(0)
    for scene, _, samples in iter_scenes("train", 5, n_images=150, expressions_per_image=3):
        for sample in samples:
            target = tuple(sample.bbox) if sample.bbox is not None else None
            for case in crop_cases(scene, sample, rng):
                kinds[case.kind] += 1
                if target is None:
                    assert not case.yes
                    continue
                assert case.yes == (iou(case.bbox, target) >= 0.5), case
                if not case.yes:  # a wrong crop never shows another object the question fits
                    for k, obj in enumerate(scene.objects):
                        if k != sample.target and fits_question(obj, sample.expression):
                            assert iou(case.bbox, tuple(obj.bbox)) < 0.3
    assert set(kinds) == {"right", "other", "background", "shifted", "part", "between", "enlarged"}
    assert 0.3 < kinds["right"] / sum(kinds.values()) < 0.6


def test_recheck_examples_are_deterministic_and_teach_both_answers(encoder: Encoder) -> None:
    spec = DataSpec(split="val")
    rows = [r for i in range(20) for r in recheck_examples(i, spec, encoder, 3)]
    again = [r for i in range(20) for r in recheck_examples(i, spec, encoder, 3)]
    assert [r.questions[0].answer for r in rows] == [r.questions[0].answer for r in again]
    assert {r.questions[0].answer for r in rows} == {"yes", "no"}
