"""Training inputs for the demo checkpoint, built exactly as the server builds its prompts.

One training row = one scene image and K questions about it (K-1 follow-up chat turns). The
first question is byte-for-byte the prompt the server sends (``adapter.prompt``); the image is
resized to the model frame with ``resize_to_frame`` as the server does, the ``<|image_pad|>``
placeholder is expanded like ``HFEngine.encode``, rows are left-padded and carry
``mm_token_type_ids`` (without it image tokens silently get 1-D positions).
Answers use Qwen2.5-VL's convention: absolute pixels of the resized model frame, json.dumps
default separators (the form the server's xgrammar constraint accepts), ``[]`` for no target.
A point question (``DataSpec.p_point``) is the server's ``output="point"`` prompt answered with
the truth box's centre, ``[{"point_2d": [x, y], "label": ...}]`` in the same frame pixels.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from boxguard.server.constraints import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from boxguard.server.models import adapter_for, resize_to_frame
from boxguard.server.models.base import Output
from PIL import Image

from .dataset import scene_rng
from .expressions import Sample, generate_expressions
from .scenes import Scene, generate_scene, render_scene
from .train_dense import CellTargets, FrameObject, cell_targets
from .vocab import COLORS, SHAPES

IMAGE_PAD = "<|image_pad|>"
IM_END = "<|im_end|>"
IGNORE = -100


@dataclass
class Question:
    """One question about an image and the answer the model should write."""

    expression: str
    answer: str  # JSON text
    think: str | None  # think trace when the R1 prompt is used
    multiple: bool = False
    prompt: str | None = None  # a whole chat prompt used instead of the grounding one
    output: Output = "box"  # "point": the server's point prompt, answered with point_2d


@dataclass
class Example:
    """One scene image (original pixels) with its questions; ``boxes`` are in frame pixels."""

    image: Image.Image
    questions: list[Question]
    boxes: list[list[int] | None] = field(default_factory=list)
    objects: list[FrameObject] | None = None  # every drawn shape (dense targets); None: unknown


def frame_box(
    bbox: tuple[int, int, int, int], size: tuple[int, int], frame: tuple[int, int]
) -> list[int]:
    """Original-pixel box -> integer box in the model frame, clamped to it."""
    (w, h), (fw, fh) = size, frame
    x1, y1, x2, y2 = bbox
    out = [round(x1 * fw / w), round(y1 * fh / h), round(x2 * fw / w), round(y2 * fh / h)]
    return [min(max(v, 0), fw if i % 2 == 0 else fh) for i, v in enumerate(out)]


def answer_json(box: list[int] | None, label: str) -> str:
    """The answer list: one box with its label, or ``[]`` for no target."""
    if box is None:
        return "[]"
    return json.dumps([{"bbox_2d": box, "label": label}])


def frame_point(
    bbox: tuple[int, int, int, int], size: tuple[int, int], frame: tuple[int, int]
) -> list[int]:
    """The centre of an original-pixel box as an integer point of the model frame."""
    (w, h), (fw, fh) = size, frame
    x, y = (bbox[0] + bbox[2]) / 2 * fw / w, (bbox[1] + bbox[3]) / 2 * fh / h
    return [min(max(round(x), 0), fw), min(max(round(y), 0), fh)]


def point_answer_json(point: list[int] | None, label: str) -> str:
    """The point-mode answer list: one point with its label, or ``[]`` for no target."""
    if point is None:
        return "[]"
    return json.dumps([{"point_2d": point, "label": label}])


@dataclass(frozen=True)
class DataSpec:
    """What the generator draws; the curriculum changes ``max_objects`` as training goes."""

    seed: int = 0
    split: str = "train"
    fixed_size: tuple[int, int] | None = None
    min_objects: int = 1
    max_objects: int = 6
    questions_per_image: int = 1
    p_think: float = 0.3
    p_multiple: float = 0.1
    no_target_rate: float = 0.15
    p_large: float = 0.4
    p_point: float = 0.0  # share of questions asked in point mode


def make_example(index: int, spec: DataSpec, encoder: Encoder) -> Example:
    """Scene ``index`` of ``spec.split`` with its questions (deterministic in seed and index)."""
    rng = scene_rng(spec.seed, spec.split, index)
    scene = generate_scene(
        rng,
        min_objects=spec.min_objects,
        max_objects=spec.max_objects,
        fixed_size=spec.fixed_size,
        p_large=spec.p_large,
    )
    samples = generate_expressions(scene, rng, spec.questions_per_image, spec.no_target_rate)
    image = render_scene(scene)
    frame = encoder.adapter.model_frame(*image.size)
    questions, boxes = [], []
    size = (frame.width, frame.height)
    for sample in samples:
        box = frame_box(sample.bbox, image.size, size) if sample.bbox else None
        think = sample.think if rng.random() < spec.p_think else None
        multiple = rng.random() < spec.p_multiple
        # Drawn only when on, so runs without points keep their data stream.
        if spec.p_point > 0 and rng.random() < spec.p_point:
            point = frame_point(sample.bbox, image.size, size) if sample.bbox else None
            answer, output = point_answer_json(point, sample.label), "point"
        else:
            answer, output = answer_json(box, sample.label), "box"
        questions.append(Question(sample.expression, answer, think, multiple, output=output))
        boxes.append(box)
    return Example(image, questions, boxes, frame_objects(scene, size))


def frame_objects(scene: Scene, frame: tuple[int, int]) -> list[FrameObject]:
    """The scene's shapes with boxes scaled (not rounded) to the model frame."""
    sx, sy = frame[0] / scene.width, frame[1] / scene.height
    return [
        FrameObject(
            (o.bbox[0] * sx, o.bbox[1] * sy, o.bbox[2] * sx, o.bbox[3] * sy),
            COLORS.index(o.color),
            SHAPES.index(o.shape),
        )
        for o in scene.objects
    ]


def example_from_sample(
    image: Image.Image, sample: Sample, encoder: Encoder, think: bool = False
) -> Example:
    """A one-question example from a generator sample (used for eval sets)."""
    frame = encoder.adapter.model_frame(*image.size)
    box = frame_box(sample.bbox, image.size, (frame.width, frame.height)) if sample.bbox else None
    q = Question(sample.expression, answer_json(box, sample.label), sample.think if think else None)
    return Example(image, [q], [box])


class Encoder:
    """Tokenizer + image processor + adapter of a checkpoint dir; builds training batches."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        digit_weight: float = 1.0,
        think_weight: float = 1.0,
        decision_weight: float = 1.0,
    ) -> None:
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        self.adapter = adapter_for(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.image_processor = Qwen2VLImageProcessorPil.from_pretrained(
            model_dir,
            size={
                "shortest_edge": self.adapter.min_pixels,
                "longest_edge": self.adapter.max_pixels,
            },
        )
        self.image_token_id = self._token_id(IMAGE_PAD)
        self.pad_token_id = self._token_id("<|endoftext|>")
        self.digit_weight = digit_weight
        self.think_weight = think_weight
        self.decision_weight = decision_weight
        vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        self._digit_ids = {i for i, t in enumerate(vocab) if t and t.strip("Ġ").isdigit()}
        self._text = [t or "" for t in vocab]

    def _token_id(self, token: str) -> int:
        """The id of one token (a str in gives one id out; the stub says int | list[int])."""
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if not isinstance(token_id, int):
            raise ValueError(f"tokenizer has no id for {token}")
        return token_id

    def frame_image(self, image: Image.Image) -> Image.Image:
        """Resize to the model frame exactly as the server does."""
        frame = self.adapter.model_frame(*image.size)
        return resize_to_frame(image, (frame.width, frame.height))

    @property
    def cell_px(self) -> int:
        """Side in frame pixels of the cell one image token covers (patch x merge)."""
        return self.image_processor.patch_size * self.image_processor.merge_size

    def image_inputs(self, examples: list[Example]) -> tuple[dict[str, Any], CellTargets]:
        """Pixel inputs of the examples' images resized to the model frame, and the dense
        targets of their cells in image-token order."""
        images = [self.frame_image(ex.image) for ex in examples]
        pix = dict(self.image_processor(images=images, return_tensors="pt"))
        merge = self.image_processor.merge_size
        patch = self.image_processor.patch_size
        cells = []
        for ex, img, (_, h, w) in zip(
            examples, images, pix["image_grid_thw"].tolist(), strict=True
        ):
            if (w * patch, h * patch) != img.size:
                raise ValueError(f"processor resized {img.size} to {(w * patch, h * patch)}")
            cells.append(cell_targets(ex.objects, w // merge, h // merge, self.cell_px))
        return pix, CellTargets.concat(cells)

    def segments(self, ex: Example, n_image_tokens: int) -> list[tuple[str, str]]:
        """(text, role) pieces of one row; role is prompt (no loss), think, answer or end."""
        out: list[tuple[str, str]] = []
        for k, q in enumerate(ex.questions):
            think = q.think is not None
            if k == 0:
                prompt = q.prompt or self.adapter.prompt(
                    q.expression, multiple=q.multiple, think=think, output=q.output
                )
                prompt = prompt.replace(IMAGE_PAD, IMAGE_PAD * n_image_tokens, 1)
            else:
                user = self.adapter.user_text(
                    q.expression, multiple=q.multiple, think=think, output=q.output
                )
                prompt = f"\n<|im_start|>user\n{user}{IM_END}\n<|im_start|>assistant\n"
            # The server appends <think> to the prompt and lets the model write the rest.
            out.append((prompt + THINK_OPEN if think else prompt, "prompt"))
            if think:
                out.append((f"{q.think}{THINK_CLOSE}\n{ANSWER_OPEN}", "think"))
                out.append((q.answer, "answer"))
                out.append((f"{ANSWER_CLOSE}{IM_END}", "end"))
            else:
                out.append((q.answer, "answer"))
                out.append((IM_END, "end"))
        return out

    def encode(self, examples: list[Example]) -> dict[str, Any]:
        """Left-padded batch: input_ids, attention_mask, mm_token_type_ids, pixel inputs,
        labels (-100 on prompt tokens) and per-token loss weights."""
        pix, cells = self.image_inputs(examples)
        merge = self.image_processor.merge_size
        rows: list[tuple[list[int], list[int], list[float], list[bool]]] = []
        for ex, (t, h, w) in zip(examples, pix["image_grid_thw"].tolist(), strict=True):
            ids: list[int] = []
            labels: list[int] = []
            weights: list[float] = []
            coord: list[bool] = []
            for text, role in self.segments(ex, t * h * w // (merge * merge)):
                piece = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                ids += piece
                flags = self._coord_flags(piece) if role == "answer" else [False] * len(piece)
                coord += flags
                if role == "prompt":
                    labels += [IGNORE] * len(piece)
                    weights += [0.0] * len(piece)
                    continue
                labels += piece
                if role == "think":
                    weights += [self.think_weight] * len(piece)
                elif role == "answer":
                    # The first token decides between "[]" (no target) and a box.
                    weights += [self.decision_weight] + [
                        self.digit_weight if f else 1.0 for f in flags[1:]
                    ]
                else:
                    weights += [1.0] * len(piece)
            rows.append((ids, labels, weights, coord))
        width = max(len(r[0]) for r in rows)
        n = len(rows)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        labels_t = torch.full((n, width), IGNORE, dtype=torch.long)
        weights_t = torch.zeros((n, width), dtype=torch.float32)
        coord_t = torch.zeros((n, width), dtype=torch.bool)
        box_index: list[tuple[int, int]] = []
        box_target: list[list[int]] = []
        box_first: list[bool] = []
        for i, ((ids, labels, weights, coord), ex) in enumerate(zip(rows, examples, strict=True)):
            s = width - len(ids)
            input_ids[i, s:] = torch.tensor(ids)
            attention[i, s:] = 1
            labels_t[i, s:] = torch.tensor(labels)
            weights_t[i, s:] = torch.tensor(weights)
            coord_t[i, s:] = torch.tensor(coord, dtype=torch.bool)
            # Each box is 4 runs of digit tokens (a point 2); every position that predicts one of
            # its digits should hold the whole target box while the digits are written.
            runs = digit_runs(coord)
            answered = [
                (b, 2 if q.output == "point" else 4)
                for q, b in zip(ex.questions, ex.boxes, strict=True)
                if b is not None
            ]
            if len(runs) != sum(n for _, n in answered):
                raise ValueError(f"{len(runs)} coordinate runs for {len(answered)} answers")
            start = 0
            for box, n_runs in answered:
                positions = [p for run in runs[start : start + n_runs] for p in run]
                start += n_runs
                for pos in positions:
                    box_index.append((i, s + pos - 1))
                    box_target.append(box)
                    box_first.append(pos == positions[0])
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            # Without this, image tokens silently get 1-D positions instead of M-RoPE ones.
            "mm_token_type_ids": (input_ids == self.image_token_id).to(torch.int),
            "pixel_values": pix["pixel_values"],
            "image_grid_thw": pix["image_grid_thw"],
            "labels": labels_t,
            "weights": weights_t,
            "coord": coord_t,  # coordinate digits of the answers (for the digit loss metric)
            # (row, position) whose next token is a digit of a box, and that box (frame px).
            "box_index": torch.tensor(box_index, dtype=torch.long).view(-1, 2),
            "box_target": torch.tensor(box_target, dtype=torch.float32).view(-1, 4),
            # The first digit of each box: the position that must find the target from words.
            "box_first": torch.tensor(box_first, dtype=torch.bool),
            "cells": cells,  # dense targets of every image token, in order
            "cell_px": self.cell_px,
        }

    def _coord_flags(self, piece: list[int]) -> list[bool]:
        """True for digit tokens inside a ``"bbox_2d": [...]`` list."""
        flags, inside = [], False
        for tid in piece:
            text = self._text[tid]
            flags.append(inside and tid in self._digit_ids)
            if text.endswith("["):
                inside = True
            elif "]" in text:
                inside = False
        return flags


def digit_runs(flags: list[bool]) -> list[list[int]]:
    """Positions of each maximal run of True in ``flags`` (one run per coordinate)."""
    runs: list[list[int]] = []
    for k, flag in enumerate(flags):
        if flag:
            if k == 0 or not flags[k - 1]:
                runs.append([])
            runs[-1].append(k)
    return runs


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position next-token CE (B, L-1); 0 where the label is ignored."""
    logits = logits[:, :-1].float()
    labels = labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(labels.shape)


def weighted_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted mean CE, unweighted mean CE) of next-token prediction on labelled tokens."""
    logits = logits[:, :-1].float()
    labels = labels[:, 1:]
    weights = weights[:, 1:].to(logits.device)
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(labels.shape)
    mask = (labels != IGNORE).float()
    plain = (ce * mask).sum() / mask.sum().clamp(min=1)
    weighted = (ce * weights).sum() / weights.sum().clamp(min=1e-6)
    return weighted, plain


def model_inputs(
    batch: dict[str, torch.Tensor], device: torch.device, accepts_mm_types: bool = True
) -> dict[str, torch.Tensor]:
    """The tensors the model's forward takes, on ``device``."""
    keys = ["input_ids", "attention_mask", "pixel_values", "image_grid_thw"]
    if accepts_mm_types:
        keys.append("mm_token_type_ids")
    return {k: batch[k].to(device) for k in keys}


def curriculum_max_objects(samples_seen: int, ramp_samples: int, final: int = 6) -> int:
    """1 object until the first step of the ramp, then one more every ramp/(final-1) samples."""
    if ramp_samples <= 0:
        return final
    return min(final, 1 + samples_seen * (final - 1) // ramp_samples)


def save_atomically(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a state."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_model(model_dir: Path, device: torch.device) -> Any:
    """The checkpoint's float32 image-text model on ``device``; its class comes from the dir."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    # PreTrainedModel.to is decorated with functools.wraps, whose stub leaves `self` unbound.
    move_to = cast(Callable[[torch.device], Any], model.to)
    return move_to(device)


def shuffle_rng(seed: int, step: int) -> random.Random:
    """RNG for per-step choices, reproducible across resumes."""
    return random.Random(f"boxguard-train/{seed}/{step}")
