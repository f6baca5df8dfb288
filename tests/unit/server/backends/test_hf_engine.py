"""HFEngine on the tiny checkpoint: M-RoPE guard, encoding, constrained and sampled generation."""

from __future__ import annotations

import json
import logging

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgrammar")

from boxguard.server.backends.base import BackendError  # noqa: E402
from boxguard.server.backends.hf_engine import (  # noqa: E402
    DecodeParams,
    HFEngine,
    SequenceJob,
)
from boxguard.server.constraints import yes_no_constraint  # noqa: E402
from boxguard.server.models import ModelAdapter  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

PATCH = 14
MERGE = 2


def frame_image(adapter: ModelAdapter, width: int = 168, height: int = 112) -> Image.Image:
    """A drawn image already resized to the adapter's model frame."""
    frame = adapter.model_frame(width, height)
    image = Image.new("RGB", (frame.width, frame.height), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 40, 40), fill="red")
    draw.rectangle(
        (frame.width - 40, frame.height - 40, frame.width - 8, frame.height - 8), fill="blue"
    )
    return image


def box_constraint(adapter: ModelAdapter, image: Image.Image, *, max_items: int = 1):
    frame = adapter.model_frame(*image.size)
    return adapter.constraint(
        frame,
        multiple=max_items > 1,
        think=False,
        max_detections=max_items,
        max_label_chars=8,
        max_tokens=80,
        think_max_tokens=16,
    )


# -- M-RoPE ------------------------------------------------------------------------------------


def test_forward_takes_mm_token_type_ids(engine: HFEngine) -> None:
    assert engine._accepts_mm_types  # transformers 5.x: without it images get 1-D positions


def test_prefill_rope_deltas_non_zero_with_an_image(
    engine: HFEngine, adapter: ModelAdapter
) -> None:
    image = frame_image(adapter)
    engine.model.model.rope_deltas = None  # no state from earlier calls
    deltas = engine.prefill_rope_deltas(SequenceJob(adapter.prompt("the red circle"), image, None))
    assert deltas is not None
    assert bool((deltas != 0).all())
    # One image of llm grid (1, H, W) spans max(H, W) positions instead of H*W tokens.
    h, w = image.height // PATCH // MERGE, image.width // PATCH // MERGE
    assert deltas.flatten().tolist() == [max(h, w) - h * w]


def test_rope_guard_fails_without_mm_token_type_ids(
    engine: HFEngine, adapter: ModelAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard above is meaningful: dropping mm_token_type_ids gives no 3-D positions."""
    monkeypatch.setattr(engine, "_accepts_mm_types", False)
    job = SequenceJob(adapter.prompt("the red circle"), frame_image(adapter), None)
    assert "mm_token_type_ids" not in engine.encode([job])
    engine.model.model.rope_deltas = None
    deltas = engine.prefill_rope_deltas(job)
    assert deltas is None or bool((deltas == 0).all())


def test_prefill_rope_deltas_is_not_stale(engine: HFEngine, adapter: ModelAdapter) -> None:
    image_job = SequenceJob(adapter.prompt("the red circle"), frame_image(adapter), None)
    assert bool((engine.prefill_rope_deltas(image_job) != 0).all())
    text_job = SequenceJob(adapter.chat("hello", with_image=False), None, None)
    deltas = engine.prefill_rope_deltas(text_job)
    assert deltas is None or bool((deltas == 0).all())


# -- encode ------------------------------------------------------------------------------------


def test_encode_marks_exactly_the_image_tokens(engine: HFEngine, adapter: ModelAdapter) -> None:
    image = frame_image(adapter)
    inputs = engine.encode([SequenceJob(adapter.prompt("the red circle"), image, None)])
    ids = inputs["input_ids"][0]
    types = inputs["mm_token_type_ids"][0]
    t, h, w = inputs["image_grid_thw"][0].tolist()
    assert (w * PATCH, h * PATCH) == image.size  # the processor did not resize
    expected = t * h * w // (MERGE * MERGE)
    assert int(types.sum()) == expected
    assert int((ids == engine.image_token_id).sum()) == expected
    assert torch.equal(types.bool(), ids == engine.image_token_id)
    assert set(types.tolist()) <= {0, 1}
    # one contiguous block between <|vision_start|> and <|vision_end|>
    positions = (types == 1).nonzero().flatten().tolist()
    assert positions == list(range(positions[0], positions[0] + expected))
    tok = engine.tokenizer
    assert ids[positions[0] - 1] == tok.convert_tokens_to_ids("<|vision_start|>")
    assert ids[positions[-1] + 1] == tok.convert_tokens_to_ids("<|vision_end|>")
    assert inputs["pixel_values"].shape[0] == t * h * w


def test_encode_batch_is_left_padded(engine: HFEngine, adapter: ModelAdapter) -> None:
    small = frame_image(adapter, 112, 84)
    large = frame_image(adapter, 224, 168)
    jobs = [
        SequenceJob(adapter.prompt("a"), small, None),
        SequenceJob(adapter.prompt("the red circle on the left"), large, None),
    ]
    inputs = engine.encode(jobs)
    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["mm_token_type_ids"]
    assert ids.shape == mask.shape == types.shape
    assert mask[:, -1].tolist() == [1, 1]  # left padding: every row ends on a real token
    pad_len = int((mask[0] == 0).sum())
    assert pad_len > 0 and mask[0, :pad_len].sum() == 0
    assert (ids[0, :pad_len] == engine.pad_token_id).all()
    for row, image in enumerate((small, large)):
        t, h, w = inputs["image_grid_thw"][row].tolist()
        assert (w * PATCH, h * PATCH) == image.size
        assert int(types[row].sum()) == t * h * w // 4


def test_encode_without_image(engine: HFEngine, adapter: ModelAdapter) -> None:
    inputs = engine.encode([SequenceJob(adapter.chat("hi", with_image=False), None, None)])
    assert "pixel_values" not in inputs
    assert int(inputs["mm_token_type_ids"].sum()) == 0


def test_image_off_the_frame_is_refused(engine: HFEngine, adapter: ModelAdapter) -> None:
    """encode() checks that the processor kept the server's frame; a resized image is an error."""
    prompt = adapter.prompt("x")
    with pytest.raises(BackendError, match="resized"):
        engine.encode([SequenceJob(prompt, Image.new("RGB", (250, 170)), None)])
    # multiples of 28 but over the processor's max_pixels (224*224): it would shrink it
    with pytest.raises(BackendError, match="resized"):
        engine.encode([SequenceJob(prompt, Image.new("RGB", (280, 252)), None)])


# -- generation --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def greedy_answer(engine: HFEngine, adapter: ModelAdapter):
    image = frame_image(adapter)
    constraint = box_constraint(adapter, image, max_items=1)
    job = SequenceJob(adapter.prompt("the red circle"), image, constraint)
    return job, engine.generate([job], DecodeParams(max_new_tokens=60))[0]


def test_constrained_generate_returns_schema_valid_json(
    greedy_answer, adapter: ModelAdapter
) -> None:
    job, result = greedy_answer
    assert result.finish_reason == "stop"
    value = json.loads(result.text)
    assert isinstance(value, list) and len(value) <= 1
    width, height = job.image.size
    for item in value:
        assert set(item) == {"bbox_2d", "label"}
        x1, y1, x2, y2 = item["bbox_2d"]
        assert all(isinstance(v, int) for v in (x1, y1, x2, y2))
        assert 0 <= x1 <= width and 0 <= x2 <= width
        assert 0 <= y1 <= height and 0 <= y2 <= height
        assert 1 <= len(item["label"]) <= 8


def test_logprobs_and_token_texts(greedy_answer, engine: HFEngine) -> None:
    _, result = greedy_answer
    assert result.tokens
    assert all(t.logprob <= 0.0 for t in result.tokens)
    assert "".join(t.text for t in result.tokens) == result.text
    ids = [t.token_id for t in result.tokens]
    assert engine.tokenizer.decode(ids, skip_special_tokens=False) == result.text
    assert not set(ids) & set(engine.stop_token_ids)  # the stop token is cut off
    # Under the grammar many tokens are forced: their renormalized logprob is 0.
    assert any(t.logprob == 0.0 for t in result.tokens)


def test_greedy_is_deterministic(greedy_answer, engine: HFEngine) -> None:
    job, first = greedy_answer
    again = engine.generate([job], DecodeParams(max_new_tokens=60))[0]
    assert again.text == first.text
    assert [t.token_id for t in again.tokens] == [t.token_id for t in first.tokens]


def test_greedy_rows_of_one_batch_agree(engine: HFEngine, adapter: ModelAdapter) -> None:
    job = SequenceJob(adapter.prompt("the red circle") + "<think>", frame_image(adapter), None)
    params = DecodeParams(max_new_tokens=6)
    alone = engine.generate([job], params)[0]
    pair = engine.generate([job, job], params)
    assert [r.text for r in pair] == [alone.text, alone.text]


def test_sampled_rows_differ_and_are_seeded(engine: HFEngine, adapter: ModelAdapter) -> None:
    job = SequenceJob(adapter.prompt("the red circle") + "<think>", frame_image(adapter), None)
    params = DecodeParams(max_new_tokens=12, do_sample=True, temperature=1.0, seed=123)
    rows = engine.generate([job] * 3, params)
    assert len(rows) == 3
    assert len({r.text for r in rows}) >= 2
    again = engine.generate([job] * 3, params)
    assert [r.text for r in again] == [r.text for r in rows]
    for row in rows:
        assert "".join(t.text for t in row.tokens) == row.text
        assert all(t.logprob <= 0.0 for t in row.tokens)


def test_sampled_constrained_rows_are_all_valid(engine: HFEngine, adapter: ModelAdapter) -> None:
    image = frame_image(adapter)
    job = SequenceJob(adapter.prompt("the red circle"), image, box_constraint(adapter, image))
    params = DecodeParams(max_new_tokens=60, do_sample=True, temperature=1.0, seed=7)
    for row in engine.generate([job] * 3, params):
        assert row.finish_reason == "stop"
        assert len(json.loads(row.text)) <= 1


def test_stop_strings_end_the_think_phase(engine: HFEngine, adapter: ModelAdapter) -> None:
    """A free (think) phase stops right after the stop string, as `</think>` will end it."""
    job = SequenceJob(
        adapter.prompt("the red circle", think=True) + "<think>", frame_image(adapter), None
    )
    free = engine.generate([job], DecodeParams(max_new_tokens=16))[0]
    assert free.finish_reason == "length" and len(free.tokens) == 16
    # Use a piece the model really writes (a random model never writes </think> itself).
    k = next(
        i
        for i in range(3, 12)
        if free.tokens[i].text.strip()
        and free.tokens[i].text not in "".join(t.text for t in free.tokens[:i])
    )
    stop = free.tokens[k].text
    stopped = engine.generate([job], DecodeParams(max_new_tokens=16, stop_strings=(stop,)))[0]
    assert stopped.finish_reason == "stop"
    assert len(stopped.tokens) == k + 1
    assert stopped.text == "".join(t.text for t in free.tokens[: k + 1])
    assert stopped.text.endswith(stop)


def test_yes_no_constraint_answers_yes_or_no(engine: HFEngine, adapter: ModelAdapter) -> None:
    job = SequenceJob(
        adapter.chat("Is there a red circle? Answer yes or no."),
        frame_image(adapter),
        yes_no_constraint(),
    )
    result = engine.generate([job], DecodeParams(max_new_tokens=4))[0]
    assert result.text in {"yes", "no"}
    assert result.finish_reason == "stop"


def test_mixed_constrained_and_free_batch_is_refused(
    engine: HFEngine, adapter: ModelAdapter
) -> None:
    image = frame_image(adapter)
    jobs = [SequenceJob("a", None, yes_no_constraint()), SequenceJob("b", None, None)]
    with pytest.raises(ValueError):
        engine.generate(jobs, DecodeParams(max_new_tokens=2))
    del image


def test_cancelled_row_finishes_as_abort(engine: HFEngine, adapter: ModelAdapter) -> None:
    job = SequenceJob(
        adapter.prompt("x") + "<think>", frame_image(adapter), None, cancelled=lambda: True
    )
    result = engine.generate([job], DecodeParams(max_new_tokens=16))[0]
    assert result.finish_reason == "abort"
    assert len(result.tokens) <= 1


@pytest.mark.parametrize("text", ["café", "日本語の猫", "a\u00e9\u4e2d\U0001f600z"])
def test_token_pieces_keep_multibyte_characters_whole(engine: HFEngine, text: str) -> None:
    ids = engine.tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text)  # the tiny vocabulary splits these characters into bytes
    logprobs = torch.zeros(len(ids))
    result = engine._result(
        torch.tensor(ids), logprobs, DecodeParams(max_new_tokens=99), SequenceJob("", None, None)
    )
    assert result.text == text
    assert "\ufffd" not in result.text
    assert [t.token_id for t in result.tokens] == ids


def test_token_texts_take_linear_time(engine: HFEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "the red circle left of the blue square, " * 20 + "日本語の猫 café"
    ids = engine.tokenizer.encode(text, add_special_tokens=False)
    original = engine.tokenizer.decode
    decoded: list[int] = []

    def counting(token_ids: list[int], **kw: object) -> str:
        decoded.append(len(token_ids))
        return original(token_ids, **kw)

    monkeypatch.setattr(engine.tokenizer, "decode", counting)
    pieces = engine._pieces(ids)
    assert "".join(pieces) == original(ids, skip_special_tokens=False) == text
    assert len(ids) > 200
    assert sum(decoded) <= 8 * len(ids)  # prefix decoding costs len(ids) ** 2 / 2


def test_load_logs_the_device_and_says_when_auto_fell_back_to_cpu(
    tiny_checkpoint, adapter: ModelAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    caplog.set_level(logging.INFO, logger="boxguard.server.backends.hf_engine")
    HFEngine(
        str(tiny_checkpoint),
        min_pixels=adapter.min_pixels,
        max_pixels=adapter.max_pixels,
        device="auto",
        dtype="float32",
    )
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("model on"))
    if torch.cuda.is_available():
        assert line == "model on cuda (float32)"
    else:
        assert line == "model on cpu (float32) - no CUDA GPU visible, --device auto chose the CPU"
