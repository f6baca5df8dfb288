"""Training-only auxiliary losses that teach the text model where things are.

Boxes are written as absolute frame pixels, yet from-scratch runs answered one box for every
image: nothing in the data ties an image token to its place in the grid, and the digit loss
alone is a sparse signal for the answer to read it. Two linear probes add dense signals:

* ``position``: on an early layer, every image token regresses its own (column, row), so that
  layer learns to derive position from M-RoPE;
* ``box``: on a late layer, every token that predicts a digit of a box regresses that box,
  so attention learns to fetch the target's position and keep it while digits are written.

The probes are discarded at export: the shipped checkpoint is the plain Qwen2.5-VL model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Regression = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# L1 keeps a useful gradient at the few-pixel errors that decide IoU >= 0.5; MSE's fades there.
REGRESSION_LOSSES: dict[str, Regression] = {
    "mse": torch.nn.functional.mse_loss,
    "l1": torch.nn.functional.l1_loss,
}

# Scales keep regression targets near [0, 1] for the frames we train on (<= 224 px a side).
GRID_SCALE = 8.0
BOX_SCALE = 224.0


class AuxHeads(torch.nn.Module):
    """The two probes: hidden -> (column, row) and hidden -> (x1, y1, x2, y2)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.position = torch.nn.Linear(hidden_size, 2)
        self.box = torch.nn.Linear(hidden_size, 4)


def position_targets(
    input_ids: torch.Tensor, grid_thw: torch.Tensor, image_token_id: int, merge_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of image tokens (B, L), their (column, row) / GRID_SCALE in row-major order)."""
    mask = input_ids == image_token_id
    targets = []
    for t, h, w in grid_thw.tolist():
        gh, gw = h // merge_size, w // merge_size
        rows = torch.arange(gh).repeat_interleave(gw).repeat(t)
        cols = torch.arange(gw).repeat(gh * t)
        targets.append(torch.stack([cols, rows], dim=1).float() + 0.5)
    # One image per row, in batch order: masked_select order matches concatenation order.
    return mask, torch.cat(targets) / GRID_SCALE


def position_loss(
    head: torch.nn.Linear,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    grid_thw: torch.Tensor,
    image_token_id: int,
    merge_size: int,
    regress: Regression = torch.nn.functional.mse_loss,
) -> torch.Tensor:
    """Regression error of the probe's (column, row) over every image token in the batch."""
    mask, targets = position_targets(input_ids.cpu(), grid_thw.cpu(), image_token_id, merge_size)
    picked = hidden[mask.to(hidden.device)]
    if picked.shape[0] != targets.shape[0]:
        raise ValueError(f"{picked.shape[0]} image tokens but {targets.shape[0]} grid cells")
    return regress(head(picked), targets.to(hidden.device))


def box_loss(
    head: torch.nn.Linear,
    hidden: torch.Tensor,
    box_index: torch.Tensor,
    box_target: torch.Tensor,
    regress: Regression = torch.nn.functional.mse_loss,
) -> torch.Tensor:
    """Regression error of the box probe at each box digit's predicting token (0 if none)."""
    if box_index.shape[0] == 0:
        return hidden.sum() * 0.0
    index = box_index.to(hidden.device)
    picked = hidden[index[:, 0], index[:, 1]]
    return regress(head(picked), box_target.to(hidden.device) / BOX_SCALE)
