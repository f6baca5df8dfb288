"""Training-only dense losses on image tokens: what each grid cell shows and where its edges are.

The answer supervises one box per question, a sparse signal for a from-scratch vision tower to
learn sub-cell precision from. Detection models learn it from every cell at once, so every image
token whose cell an object covers is also taught (training only; heads discarded at export):

* on the image embeddings (vision tower + merger output, ``hidden_states[0]``): the object's
  color and shape (background for empty cells) and its edges as offsets from the cell centre,
  which a translation-equivariant tower can learn;
* on a middle text layer: the object's absolute frame box, which the text model can compute
  from those offsets and the cell's M-RoPE position, so the answer only has to copy it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .train_aux import BOX_SCALE, Regression
from .vocab import COLORS, SHAPES

IGNORE = -100
# A cell belongs to an object when the overlap is at least this share of the smaller of the two.
MIN_OVERLAP = 0.25


@dataclass(frozen=True)
class FrameObject:
    """One drawn shape in model-frame pixels (float box) with its vocabulary class indices."""

    box: tuple[float, float, float, float]
    color: int  # index into COLORS
    shape: int  # index into SHAPES


@dataclass
class CellTargets:
    """Per-image-token targets in row-major cell order, concatenated over a batch."""

    color: torch.Tensor  # (N,) 0 = background, 1 + COLORS index; IGNORE when unknown
    shape: torch.Tensor  # (N,) 0 = background, 1 + SHAPES index; IGNORE when unknown
    box: torch.Tensor  # (N, 4) the covering object's frame box (zeros where none)
    center: torch.Tensor  # (N, 2) the cell centre in frame pixels
    covered: torch.Tensor  # (N,) bool: an object covers the cell

    @staticmethod
    def concat(parts: list[CellTargets]) -> CellTargets:
        """Targets of a batch from its images' targets, in batch order."""
        return CellTargets(
            *(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(CellTargets))
        )

    def to(self, device: torch.device) -> CellTargets:
        """The same targets on ``device``."""
        return CellTargets(*(getattr(self, f.name).to(device) for f in fields(self)))


def cell_centers(grid_w: int, grid_h: int, cell: int) -> torch.Tensor:
    """(x, y) centres in frame pixels of a grid's cells, row-major (the image-token order)."""
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    return (torch.stack([cols.flatten(), rows.flatten()], 1).float() + 0.5) * cell


def cell_coverage(
    centers: torch.Tensor, box: torch.Tensor, cell: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(overlap area of ``box`` with each cell, whether that overlap makes the cell the box's)."""
    half = cell / 2
    w = torch.minimum(centers[:, 0] + half, box[2]) - torch.maximum(centers[:, 0] - half, box[0])
    h = torch.minimum(centers[:, 1] + half, box[3]) - torch.maximum(centers[:, 1] - half, box[1])
    area = w.clamp(min=0) * h.clamp(min=0)
    box_area = float((box[2] - box[0]) * (box[3] - box[1]))
    return area, area >= MIN_OVERLAP * min(cell * cell, box_area)


def cell_targets(
    objects: list[FrameObject] | None, grid_w: int, grid_h: int, cell: int
) -> CellTargets:
    """Targets of one image's ``grid_h x grid_w`` cells of ``cell`` px (None: all unknown).

    A cell takes the object that covers most of it among those it counts for.
    """
    center = cell_centers(grid_w, grid_h, cell)
    n = center.shape[0]
    color = torch.full((n,), IGNORE if objects is None else 0, dtype=torch.long)
    shape = color.clone()
    box = torch.zeros((n, 4))
    best = torch.zeros(n)
    for obj in objects or []:
        obj_box = torch.tensor(obj.box)
        area, counts = cell_coverage(center, obj_box, cell)
        take = counts & (area > best)
        color[take], shape[take], box[take], best[take] = (
            obj.color + 1,
            obj.shape + 1,
            obj_box,
            area[take],
        )
    return CellTargets(color, shape, box, center, best > 0)


class DenseHeads(torch.nn.Module):
    """Cell classes and edge offsets from the image embeddings; absolute box from a text layer."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.classes = torch.nn.Linear(hidden_size, 1 + len(COLORS) + 1 + len(SHAPES))
        self.offsets = torch.nn.Linear(hidden_size, 4)
        self.box = torch.nn.Linear(hidden_size, 4)


def dense_loss(
    heads: DenseHeads,
    embeds: torch.Tensor,
    middle: torch.Tensor,
    input_ids: torch.Tensor,
    image_token_id: int,
    targets: CellTargets,
    cell: int,
    regress: Regression = torch.nn.functional.mse_loss,
) -> torch.Tensor:
    """``cell_loss`` on the image embeddings plus box regression on the middle layer's tokens."""
    mask = (input_ids == image_token_id).to(embeds.device)
    early, late = embeds[mask], middle[mask]
    loss = cell_loss(heads, early, targets, cell, regress)
    if not bool(targets.covered.any()):
        return loss
    t = targets.to(embeds.device)
    # Box targets are ~10x smaller than offsets in cells; the weight keeps both comparable.
    return loss + 10.0 * regress(heads.box(late[t.covered]), t.box[t.covered] / BOX_SCALE)


def cell_loss(
    heads: DenseHeads,
    embeds: torch.Tensor,
    targets: CellTargets,
    cell: int,
    regress: Regression = torch.nn.functional.mse_loss,
) -> torch.Tensor:
    """Color + shape CE over labelled cells and edge-offset regression (in cells) over covered."""
    if embeds.shape[0] != targets.color.shape[0]:
        raise ValueError(f"{embeds.shape[0]} image tokens but {targets.color.shape[0]} cells")
    any_covered = bool(targets.covered.any())  # targets are built on the CPU: no device sync
    t = targets.to(embeds.device)
    logits = heads.classes(embeds)
    n_color = 1 + len(COLORS)
    ce = functional_ce(logits[:, :n_color], t.color) + functional_ce(logits[:, n_color:], t.shape)
    if not any_covered:
        return ce
    box = t.box[t.covered]
    cx, cy = t.center[t.covered].unbind(1)
    offsets = torch.stack([cx - box[:, 0], cy - box[:, 1], box[:, 2] - cx, box[:, 3] - cy], 1)
    return ce + regress(heads.offsets(embeds[t.covered]), offsets / cell)


def cell_accuracy(
    heads: DenseHeads, embeds: torch.Tensor, targets: CellTargets
) -> tuple[float, float]:
    """(color, shape) accuracy of the class head on covered cells."""
    if not bool(targets.covered.any()):
        return 0.0, 0.0
    t = targets.to(embeds.device)
    logits = heads.classes(embeds[t.covered])
    n_color = 1 + len(COLORS)
    color = logits[:, :n_color].argmax(1) == t.color[t.covered]
    shape = logits[:, n_color:].argmax(1) == t.shape[t.covered]
    return float(color.float().mean()), float(shape.float().mean())


def functional_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over labelled cells; 0 (with a graph) when none is labelled."""
    if not bool((labels != IGNORE).any()):
        return logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE)
