"""Training-only attention supervision: while a box is written, one head looks at its object.

With every image cell taught its color, shape and box (``train_dense``), a run still put only a
quarter of its "the {color} {shape}" answers on the named object: the text model had not learned
to find the cell the expression names. This loss tells it directly. At every position that
predicts a digit of a box, one attention head of one text layer should put its weight on the
image tokens of that box's cells; the loss is ``-log`` of that attention mass. The head is the
model's own (nothing is added or discarded), so what it learns is what the server runs.

The first digit of a box is where the expression alone must find the target (later digits can
match the digits already written against each cell's box), and a probe found that position's
head on the target about half as often as the others: ``first_weight`` weights it up.
"""

from __future__ import annotations

import torch

from .train_dense import CellTargets, cell_coverage


def target_cells(centers: torch.Tensor, box: torch.Tensor, cell: int) -> torch.Tensor:
    """Cells (by centre) that ``box`` covers under the dense-target rule; else the best ones."""
    area, chosen = cell_coverage(centers, box, cell)
    return chosen if bool(chosen.any()) else area == area.max()


def attention_loss(
    attn: torch.Tensor,
    head: int,
    input_ids: torch.Tensor,
    image_token_id: int,
    box_index: torch.Tensor,
    box_target: torch.Tensor,
    cells: CellTargets,
    cell: int,
    box_first: torch.Tensor | None = None,
    first_weight: float = 1.0,
) -> torch.Tensor:
    """Weighted mean ``-log`` attention mass of ``head`` on the target's cells, over box digits.

    ``attn`` is one layer's weights (batch, heads, query, key); ``box_index`` rows are
    (batch row, query position), ``box_target`` the frame box each of them writes and
    ``box_first`` marks each box's first digit, weighted ``first_weight`` (others 1).
    """
    if box_index.shape[0] == 0:
        return attn.sum() * 0.0
    mask = (input_ids == image_token_id).cpu()
    counts = mask.sum(1)
    starts = torch.cumsum(counts, 0) - counts
    target = torch.zeros((box_index.shape[0], attn.shape[-1]), dtype=torch.bool)
    # Every digit of a box shares its target keys: find them once per (row, box).
    keys_of: dict[tuple[int, tuple[float, ...]], torch.Tensor] = {}
    for j, ((row, _), box) in enumerate(zip(box_index.tolist(), box_target, strict=True)):
        key = (row, tuple(box.tolist()))
        if key not in keys_of:
            keys = mask[row].nonzero().squeeze(1)
            centers = cells.center[int(starts[row]) : int(starts[row] + counts[row])]
            keys_of[key] = keys[target_cells(centers, box, cell)]
        target[j, keys_of[key]] = True
    index = box_index.to(attn.device)
    probs = attn[index[:, 0], head, index[:, 1]]  # (queries, keys)
    mass = (probs * target.to(attn.device)).sum(1)
    weights = torch.ones(box_index.shape[0])
    if box_first is not None:
        weights[box_first] = first_weight
    weights = weights.to(attn.device)
    return -(torch.log(mass + 1e-6) * weights).sum() / weights.sum()
