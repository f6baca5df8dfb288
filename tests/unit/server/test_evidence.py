"""The evidence helpers: crop geometry, P(yes) from a yes|no answer, all-or-cancel awaiting."""

from __future__ import annotations

import asyncio
import threading

import pytest
from boxguard.guards import CropQuestion
from boxguard.server.backends import BackendError, Completion, Generation, TokenChoice
from boxguard.server.evidence import all_or_cancel, crop_box, crop_requests, yes_probability
from boxguard.server.models import adapter_for_family
from boxguard.server.models import resize as resize_module
from PIL import Image


def test_crop_box_is_at_least_a_pixel_and_within_the_ratio() -> None:
    assert crop_box((10.2, 20.7, 50.4, 60.5), (100, 100)) == (10, 21, 50, 60)
    assert crop_box((5, 5, 5, 5), (100, 100)) == (5, 5, 6, 6)
    # A 1 x 600 sliver is widened to 3 px, the ratio every Qwen-VL processor accepts.
    assert crop_box((10, 0, 11, 600), (20, 600)) == (10, 0, 13, 600)
    # ... without leaving the image.
    assert crop_box((19, 0, 20, 600), (20, 600)) == (17, 0, 20, 600)


async def test_crop_requests_resize_each_crop_to_its_frame_off_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []
    resize = resize_module.resize_to_frame

    def recorded(image: Image.Image, size: tuple[int, int]) -> Image.Image:
        threads.append(threading.get_ident())
        return resize(image, size)

    monkeypatch.setattr(resize_module, "resize_to_frame", recorded)
    adapter = adapter_for_family("qwen2_5_vl")
    image = Image.new("RGB", (640, 480), "white")
    crops = [CropQuestion((0, 0, 300, 200), "Is this a cat?"), CropQuestion((10, 10, 66, 66), "Q?")]
    requests = await crop_requests(adapter, image, crops, "r1")
    frames = [adapter.model_frame(300, 200), adapter.model_frame(56, 56)]
    assert [r.image.size for r in requests] == [(f.width, f.height) for f in frames]
    assert [r.request_id for r in requests] == ["r1-visual0", "r1-visual1"]
    assert "Is this a cat?" in requests[0].user_text
    # Off the event loop's thread: a resize takes milliseconds and would stall other requests.
    assert len(threads) == 2 and threading.get_ident() not in threads
    assert await crop_requests(adapter, image, [], "r2") == []


async def test_crop_requests_leave_the_resize_to_the_engine_when_told() -> None:
    adapter = adapter_for_family("qwen2_5_vl")
    image = Image.new("RGB", (640, 480), "white")
    crops = [CropQuestion((0, 0, 301, 199), "Is this a cat?")]
    (request,) = await crop_requests(adapter, image, crops, "r1", "engine")
    frame = adapter.model_frame(301, 199)
    assert request.image.size == (301, 199)
    assert request.frame_size == (frame.width, frame.height) != (301, 199)
    (resized,) = await crop_requests(adapter, image, crops, "r1")
    assert resized.image.size == request.frame_size and resized.frame_size is None


def _answer(text: str, logprob: float) -> Generation:
    return Generation([Completion(text=text, tokens=[TokenChoice(1, text, logprob)])])


def test_yes_probability_reads_the_deciding_token() -> None:
    assert yes_probability(_answer("yes", -0.1)) == pytest.approx(0.9048, abs=1e-4)
    assert yes_probability(_answer("no", -0.1)) == pytest.approx(0.0952, abs=1e-4)
    # The constraint stops after the first token: "y" of a two-token "yes" decides alike.
    assert yes_probability(_answer("y", -0.1)) == pytest.approx(0.9048, abs=1e-4)
    assert yes_probability(_answer("n", -0.1)) == pytest.approx(0.0952, abs=1e-4)


@pytest.mark.parametrize(
    "generation",
    [
        Generation([Completion(text="")]),
        Generation([]),
        _answer("maybe", -0.1),
        _answer("yes, it is", -0.1),
        _answer("nope", -0.1),
        Generation([Completion(text="yes")]),  # no scored token
    ],
)
def test_a_yes_no_answer_that_is_not_one_is_a_backend_fault(generation: Generation) -> None:
    # Not P(yes) = 0: that would abstain on a right box because of an engine bug.
    with pytest.raises(BackendError, match="no yes/no answer"):
        yes_probability(generation)


async def test_all_or_cancel_returns_results_in_order() -> None:
    async def value(v: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return v

    assert await all_or_cancel([value(1, 0.02), value(2, 0.0), value(3, 0.01)]) == [1, 2, 3]


async def _slow(name: str, cancelled: list[str]) -> None:
    """Sleeps long; records its name when cancelled."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        cancelled.append(name)
        raise


async def test_first_failure_cancels_the_rest_and_propagates() -> None:
    cancelled: list[str] = []

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise LookupError("queue full")

    with pytest.raises(LookupError, match="queue full"):
        await asyncio.wait_for(
            all_or_cancel([_slow("a", cancelled), fails(), _slow("b", cancelled)]), 2
        )
    assert sorted(cancelled) == ["a", "b"]


async def test_being_cancelled_cancels_every_call() -> None:
    cancelled: list[str] = []
    task = asyncio.ensure_future(all_or_cancel([_slow("a", cancelled), _slow("b", cancelled)]))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == ["a", "b"]


async def test_every_failure_is_retrieved_when_two_fail_together(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two evidence calls failing at once: the first raises, the other is retrieved (no
    "Task exception was never retrieved" at ERROR when it is collected)."""
    import gc

    async def fails(name: str) -> None:
        await asyncio.sleep(0.01)
        raise LookupError(name)

    with pytest.raises(LookupError, match="first"):
        await all_or_cancel([fails("first"), fails("second")])
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
