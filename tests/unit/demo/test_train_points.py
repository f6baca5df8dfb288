"""Point training rows: the server's point prompt and crop, the centre as the answer."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from boxguard.demo.dataset import iter_scenes  # noqa: E402
from boxguard.demo.train_data import IGNORE, DataSpec, Encoder, make_example  # noqa: E402
from boxguard.demo.train_points import (  # noqa: E402
    PointCase,
    inside,
    point_cases,
    point_crop_example,
    point_recheck_examples,
    served_point,
)
from boxguard.demo.train_recheck import fits_question  # noqa: E402
from boxguard.guards.plan import prepare  # noqa: E402
from boxguard.guards.policy import Policy  # noqa: E402
from boxguard.guards.visual import question_for  # noqa: E402
from boxguard.server.evidence import crop_request  # noqa: E402
from boxguard.server.grounding import GroundingService  # noqa: E402
from boxguard.server.schema import GroundRequest  # noqa: E402
from boxguard.server.settings import Settings  # noqa: E402
from test_train import TINY  # noqa: E402


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint: Path) -> Encoder:
    return Encoder(tiny_checkpoint, digit_weight=4.0, decision_weight=3.0)


def point_examples(encoder: Encoder, n: int = 6, **spec: object) -> list:
    kw = {"p_point": 1.0, "questions_per_image": 2, "min_objects": 2, "p_think": 0.0, **spec}
    return [make_example(i, DataSpec(**kw), encoder) for i in range(n)]  # type: ignore[arg-type]


def test_the_point_prompt_is_what_the_server_sends_for_output_point(encoder: Encoder) -> None:
    examples = point_examples(encoder, p_multiple=0.5, p_think=0.5)
    server = SimpleNamespace(adapter=encoder.adapter, settings=Settings())
    asked = Counter()
    for ex in examples:
        first = ex.questions[0]
        assert first.output == "point"
        req = GroundRequest(
            expression=first.expression,
            output="point",
            multiple=first.multiple,
            think=first.think is not None,
        )
        served = GroundingService.generation_request(server, req, ex.image, "t")  # type: ignore[arg-type]
        prompt, *follow_ups = [t for t, role in encoder.segments(ex, 1) if role == "prompt"]
        suffix = "<think>" if first.think is not None else ""
        assert prompt == served.generation.prompt + suffix
        assert "as a point" in prompt or "as points" in prompt
        asked[first.multiple, first.think is not None] += 1
        # The follow-up questions are asked in point mode too.
        assert follow_ups and all("point coordinates" in t for t in follow_ups)
    assert len(asked) > 1


def test_a_point_answer_is_the_centre_the_servers_parser_maps_back(encoder: Encoder) -> None:
    spec = DataSpec(
        p_point=1.0, questions_per_image=1, no_target_rate=0.0, p_think=0.0, max_objects=1
    )
    for i in range(8):
        ex = make_example(i, spec, encoder)
        (question,) = ex.questions
        frame = encoder.adapter.model_frame(*ex.image.size)
        plan = prepare(
            question.answer,
            question.expression,
            ex.image.size,
            frame="pixels",
            model_size=(frame.width, frame.height),
            mode="point",
            policy=Policy(label_embeddings=False),
        )
        verdict = plan.finish(None)
        (candidate,) = verdict.candidates
        x, y = candidate.point
        fx, fy = (int(v) for v in question.answer.split("[")[2].split("]")[0].split(", "))
        w, h = ex.image.size
        assert (x, y) == served_point(
            (fx * w / frame.width, fy * h / frame.height),
            ex.image.size,
            (frame.width, frame.height),
        )
        # The written point is the truth box's centre (the one object), rounded to frame pixels.
        (obj,) = ex.objects or []
        assert abs(fx - (obj.box[0] + obj.box[2]) / 2) <= 0.5
        assert abs(fy - (obj.box[1] + obj.box[3]) / 2) <= 0.5


def test_point_answers_are_sentences_of_the_servers_point_grammar(
    encoder: Encoder, tiny_checkpoint: Path
) -> None:
    xgr = pytest.importorskip("xgrammar")
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(tiny_checkpoint).get_text_config().vocab_size
    compiler = xgr.GrammarCompiler(
        xgr.TokenizerInfo.from_huggingface(encoder.tokenizer, vocab_size=vocab)
    )
    settings = Settings()
    examples = point_examples(encoder, n=4, no_target_rate=0.3, p_multiple=0.5)
    answers = [(ex, q) for ex in examples for q in ex.questions]
    assert {q.answer == "[]" for _, q in answers} == {True, False}
    for ex, q in answers:
        constraint = encoder.adapter.constraint(
            encoder.adapter.model_frame(*ex.image.size),
            multiple=q.multiple,
            think=False,
            max_detections=settings.max_detections,
            max_label_chars=settings.max_label_chars,
            max_tokens=settings.max_new_tokens,
            think_max_tokens=settings.think_max_tokens,
            output="point",
        )
        matcher = xgr.GrammarMatcher(compiler.compile_grammar(constraint.ebnf()))
        assert matcher.accept_string(q.answer) and matcher.is_completed(), q.answer


def test_point_digits_are_weighted_and_regress_the_target_box(encoder: Encoder) -> None:
    examples = point_examples(encoder, no_target_rate=0.3)
    batch = encoder.encode(examples)
    answered = [b for ex in examples for b in ex.boxes if b is not None]
    ids, labels = batch["input_ids"], batch["labels"]
    text = encoder.tokenizer.decode(ids[0][labels[0] != IGNORE])
    assert "point_2d" in text and "bbox_2d" not in text
    assert (batch["weights"][batch["coord"]] == 4.0).all()
    # Each point's digit positions regress its target box; the first is its x's "[".
    assert int(batch["box_first"].sum()) == len(answered)
    assert {tuple(b) for b in batch["box_target"].int().tolist()} == {tuple(b) for b in answered}
    first = {encoder.tokenizer.decode(int(t)) for t in ids[batch["weights"] == 3.0]}
    assert first <= {"[", '[{"'}


def test_a_point_crop_row_is_the_servers_visual_check_request(encoder: Encoder) -> None:
    spec = DataSpec(p_point=1.0, questions_per_image=1, no_target_rate=0.0, p_think=0.0)
    ex = make_example(3, spec, encoder)
    (question,) = ex.questions
    frame = encoder.adapter.model_frame(*ex.image.size)
    policy = Policy(label_embeddings=False, visual_check=True, min_confidence=0.0)
    plan = prepare(
        question.answer,
        question.expression,
        ex.image.size,
        frame="pixels",
        model_size=(frame.width, frame.height),
        mode="point",
        policy=policy,
    )
    (crop,) = plan.crops
    candidate = plan.finish(None).candidates[0]
    case = PointCase(question.expression, candidate.point, True, "right")
    row = point_crop_example(ex.image, case, encoder)
    served = crop_request(encoder.adapter, ex.image, crop, "t")
    assert row.image.tobytes() == served.image.tobytes()
    assert row.questions[0].prompt == served.prompt
    assert crop.question == question_for(question.expression)
    batch = encoder.encode([row])
    assert encoder.tokenizer.decode(batch["input_ids"][0][batch["labels"][0] != IGNORE]) == (
        "yes<|im_end|>"
    )


def test_point_labels_follow_point_in_box_and_skip_ambiguous_points() -> None:
    kinds: Counter[str] = Counter()
    rng = random.Random(0)
    for scene, _, samples in iter_scenes("train", 5, n_images=150, expressions_per_image=3):
        frame = (math.ceil(scene.width / 2), math.ceil(scene.height / 2))
        for sample in samples:
            target = tuple(sample.bbox) if sample.bbox is not None else None
            for case in point_cases(scene, sample, rng, frame):
                kinds[case.kind] += 1
                assert case.yes == (target is not None and inside(case.point, target)), case
                if not case.yes:
                    for k, obj in enumerate(scene.objects):
                        if k != sample.target and fits_question(obj, sample.expression):
                            assert not inside(case.point, tuple(obj.bbox))
    assert set(kinds) == {"right", "other", "background", "near"}
    assert 0.3 < kinds["right"] / sum(kinds.values()) < 0.6


def test_point_recheck_rows_are_deterministic_and_teach_both_answers(encoder: Encoder) -> None:
    spec = DataSpec(split="val")
    rows = [r for i in range(20) for r in point_recheck_examples(i, spec, encoder, 3)]
    again = [r for i in range(20) for r in point_recheck_examples(i, spec, encoder, 3)]
    assert [r.questions[0].answer for r in rows] == [r.questions[0].answer for r in again]
    assert {r.questions[0].answer for r in rows} == {"yes", "no"}


def test_a_training_step_with_point_rows_runs_and_scores_points(tmp_path: Path) -> None:
    from boxguard.demo.train import main

    row = main(
        [
            "--out",
            str(tmp_path / "run"),
            "--max-steps",
            "2",
            "--minutes",
            "2",
            "--no-gen-eval",
            "--p-point",
            "0.5",
            "--questions-per-image",
            "2",
            "--point-recheck-per-image",
            "2",
            "--recheck-per-image",
            "1",
            "--n-recheck-val",
            "6",
            "--box-weight",
            "1",
            "--attention-weight",
            "1",
            "--attention-layer",
            "1",
            *TINY,
        ]
    )
    assert row["step"] == 2 and math.isfinite(row["train_loss"])
    assert math.isfinite(row["val_point_digit_loss"])
    assert 0.0 <= row["point_recheck_auroc"] <= 1.0 and 0.0 <= row["point_recheck_acc"] <= 1.0


def test_val_digit_loss_stays_box_only_when_points_train(tmp_path: Path) -> None:
    # Point digits lose more than box digits: mixing them in would move the box figure.
    from boxguard.demo.train import Trainer
    from boxguard.demo.train_args import load_args

    trainer = Trainer(
        load_args(["--out", str(tmp_path / "run"), "--p-point", "1.0", "--n-val", "2", *TINY])
    )
    assert trainer.val_tf and all(
        q.output == "box" for example in trainer.val_tf for q in example.questions
    )
    assert all(q.output == "point" for example in trainer.point_tf for q in example.questions)
