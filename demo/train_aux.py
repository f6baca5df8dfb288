"""A training-only auxiliary loss: each image token must know where it sits in the grid.

Boxes are written as absolute frame pixels, so the answer needs each image token's column and
row in its hidden state; nothing in the data says so directly, and from-scratch runs answered
one box for every image. A linear probe on an early text-model layer regresses each image
token's (column, row); its gradient teaches that layer to derive position from M-RoPE. The
probe is discarded at export: the shipped checkpoint is the plain Qwen2.5-VL architecture.
"""

from __future__ import annotations

import torch

# Grid positions are scaled by this so targets stay near [0, 1] for the frames we train on.
GRID_SCALE = 8.0


class PositionProbe(torch.nn.Module):
    """Linear map from a hidden state to the (column, row) of an image token."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, hidden) -> (N, 2)."""
        return self.linear(hidden)


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
    probe: PositionProbe,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    grid_thw: torch.Tensor,
    image_token_id: int,
    merge_size: int,
) -> torch.Tensor:
    """Mean squared error of the probe's (column, row) over every image token in the batch."""
    mask, targets = position_targets(input_ids.cpu(), grid_thw.cpu(), image_token_id, merge_size)
    picked = hidden[mask.to(hidden.device)]
    if picked.shape[0] != targets.shape[0]:
        raise ValueError(f"{picked.shape[0]} image tokens but {targets.shape[0]} grid cells")
    return torch.nn.functional.mse_loss(probe(picked), targets.to(hidden.device))
