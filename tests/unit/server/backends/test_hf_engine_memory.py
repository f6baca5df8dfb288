"""HFEngine's logprob path with a Qwen-sized (150k) vocabulary: host memory O(batch × steps)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgrammar")
psutil = pytest.importorskip("psutil")

from boxguard.server.backends.hf_engine import (  # noqa: E402
    ChosenLogprobs,
    DecodeParams,
    HFEngine,
    SequenceJob,
)
from boxguard.server.models import ModelAdapter  # noqa: E402
from PIL import Image  # noqa: E402

VOCAB = 150_000
BATCH = 8
SHORT, LONG = 16, 96


@pytest.fixture(scope="module")
def big_vocab_engine(
    tiny_checkpoint: Path, adapter: ModelAdapter, tmp_path_factory: pytest.TempPathFactory
) -> HFEngine:
    """The tiny checkpoint with its embedding and head grown to a 150k-token vocabulary."""
    from transformers import AutoModelForImageTextToText

    out = tmp_path_factory.mktemp("vocab150k")
    for path in tiny_checkpoint.iterdir():
        if not path.name.endswith(".safetensors"):
            shutil.copy(path, out / path.name)
    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint)
    model.resize_token_embeddings(VOCAB, mean_resizing=False)
    model.save_pretrained(out, safe_serialization=True)
    return HFEngine(
        str(out),
        min_pixels=adapter.min_pixels,
        max_pixels=adapter.max_pixels,
        device="cpu",
        dtype="float32",
    )


class PeakRss:
    """Samples the process's resident memory in a thread; `growth` is peak minus the start."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.start = self.peak = 0

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.0005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def test_generate_holds_no_vocabulary_sized_tensor_per_step(
    big_vocab_engine: HFEngine, adapter: ModelAdapter
) -> None:
    """Host memory grows with batch × steps, not batch × steps × vocabulary.

    Two measured runs differ only in their steps (16 vs 96), after a warm-up run, so what the
    heap already holds (prefill, allocator caches) cancels out: the extra 80 steps may cost at
    most a quarter of one float32 (batch, 80, vocab) tensor. Keeping every step's scores costs
    about four of them (1.8 GB at 96 steps, measured on the 2-core CPU box).
    """
    engine = big_vocab_engine
    assert engine.model.get_output_embeddings().weight.shape[0] == VOCAB
    frame = adapter.model_frame(84, 56)
    image = Image.new("RGB", (frame.width, frame.height), "white")
    jobs = [SequenceJob(adapter.chat("Describe it."), image, None) for _ in range(BATCH)]
    engine.generate(jobs, DecodeParams(max_new_tokens=SHORT))  # warm-up
    growth: dict[int, int] = {}
    for steps in (SHORT, LONG):
        with PeakRss() as rss:
            results = engine.generate(jobs, DecodeParams(max_new_tokens=steps))
        assert min(len(r.tokens) for r in results) == steps, [r.finish_reason for r in results]
        assert all(t.logprob <= 0.0 for r in results for t in r.tokens)
        growth[steps] = rss.growth
    one_tensor = BATCH * (LONG - SHORT) * VOCAB * 4
    assert growth[LONG] - growth[SHORT] < one_tensor / 4, (growth, one_tensor)


def test_chosen_logprobs_keeps_one_step_of_vocabulary() -> None:
    """The recorder's own state after many steps: (batch, steps) values and nothing per vocab."""
    recorder = ChosenLogprobs()
    batch, steps = 4, 64
    generator = torch.Generator().manual_seed(0)
    chosen = torch.zeros((batch, 1), dtype=torch.long)
    expected: list[torch.Tensor] = []
    for _ in range(steps):
        scores = torch.randn((batch, VOCAB), generator=generator)
        recorder(chosen, scores)
        chosen = torch.randint(0, VOCAB, (batch, 1), generator=generator)
        expected.append(torch.log_softmax(scores, -1).gather(1, chosen)[:, 0])
    kept = sum(t.numel() for t in recorder._chosen)
    assert kept == batch * (steps - 1)  # the last step waits for its chosen token
    values = recorder.finish(chosen[:, 0])
    assert values.shape == (batch, steps) and values.device.type == "cpu"
    assert torch.allclose(values, torch.stack(expected, 1))
    assert recorder._previous is None
