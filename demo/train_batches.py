"""Training batches of the demo trainer: drawn, rendered and encoded inline or in worker processes.

A batch is a pure function of its ``BatchPlan`` (step, first image index, data spec), so a
worker builds exactly what the main process would: ``--workers N`` changes speed, not data.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .train_data import DataSpec, Encoder, Example, make_example, shuffle_rng
from .train_points import point_recheck_examples
from .train_recheck import recheck_examples


@dataclass(frozen=True)
class BatchPlan:
    """Everything a batch depends on."""

    step: int
    first_image: int
    n_images: int
    spec: DataSpec
    recheck_per_image: int = 0
    recheck_positive: float = 0.5
    point_recheck_per_image: int = 0
    extra: tuple[Example, ...] = ()  # rows of an export (train_export), trained as grounding

    @property
    def samples(self) -> int:
        """Grounding questions the batch holds (each image gets exactly this many)."""
        return self.n_images * self.spec.questions_per_image


@dataclass
class Batches:
    """The encoded grounding batch, the re-check batch (None when off) and what they count."""

    grounding: dict[str, Any]
    recheck: dict[str, Any] | None
    images: int
    samples: int


def build_batches(plan: BatchPlan, encoder: Encoder) -> Batches:
    """Draw, render and encode one step's grounding rows and re-check crops."""
    examples = [
        make_example(plan.first_image + i, plan.spec, encoder) for i in range(plan.n_images)
    ]
    rng = shuffle_rng(plan.spec.seed, plan.step)
    rng.random()  # the draw that chose this batch's prompt style (Trainer.plan)
    rng.shuffle(examples)
    crops = []
    for index in range(plan.first_image, plan.first_image + plan.n_images):
        if plan.recheck_per_image > 0:
            crops += recheck_examples(
                index, plan.spec, encoder, plan.recheck_per_image, plan.recheck_positive
            )
        if plan.point_recheck_per_image > 0:
            crops += point_recheck_examples(
                index, plan.spec, encoder, plan.point_recheck_per_image, plan.recheck_positive
            )
    recheck = encoder.encode(crops) if crops else None
    # Export rows join after the draws, so the drawn stream and its counts stay as without them.
    grounding = encoder.encode([*examples, *plan.extra])
    return Batches(grounding, recheck, len(examples), sum(len(ex.questions) for ex in examples))


def pick_device(name: str) -> torch.device:
    """--device: auto is cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch sees no CUDA device")
    return device


_WORKER_ENCODER: Encoder | None = None


def _init_worker(model_dir: str, weights: tuple[float, float, float]) -> None:
    """Each worker loads the tokenizer and processor once, on one thread."""
    global _WORKER_ENCODER
    torch.set_num_threads(1)
    digit, think, decision = weights
    _WORKER_ENCODER = Encoder(
        model_dir, digit_weight=digit, think_weight=think, decision_weight=decision
    )


def _build_in_worker(plan: BatchPlan) -> Batches:
    """build_batches with the worker's encoder."""
    assert _WORKER_ENCODER is not None, "worker not initialised"
    return build_batches(plan, _WORKER_ENCODER)


class Prefetcher:
    """Builds the next steps' batches in worker processes while the model trains."""

    def __init__(
        self, plan: Callable[[int, int, int], BatchPlan], model_dir: Path, args: Any, workers: int
    ) -> None:
        self.plan = plan
        self.depth = 2 * workers
        weights = (args.digit_weight, args.think_weight, args.decision_weight)
        # spawn: forking a process that holds torch threads (or CUDA) can deadlock.
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(str(model_dir), weights),
        )
        self.queue: deque[tuple[tuple[int, int, int], Future[Batches]]] = deque()

    def next(self, step: int, image_index: int, samples: int) -> Batches:
        """The batch of this run position; later positions are queued behind it."""
        if self.queue and self.queue[0][0] != (step, image_index, samples):
            for _, future in self.queue:
                future.cancel()
            self.queue.clear()
        position = self.queue[-1][0] if self.queue else None
        while len(self.queue) < self.depth:
            if position is None:
                position = (step, image_index, samples)
            else:
                last = self.plan(*position)
                position = (
                    position[0] + 1,
                    position[1] + last.n_images,
                    position[2] + last.samples,
                )
            self.queue.append((position, self.pool.submit(_build_in_worker, self.plan(*position))))
        return self.queue.popleft()[1].result()

    def close(self) -> None:
        """Stop the workers; queued batches are dropped."""
        for _, future in self.queue:
            future.cancel()
        self.queue.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
