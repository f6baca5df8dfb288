"""Attention supervision: which keys count as the target, and the loss of a head that finds it."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from boxguard.demo.train_attention import attention_loss, target_cells  # noqa: E402
from boxguard.demo.train_dense import FrameObject, cell_targets  # noqa: E402

IMG = 7


def test_target_cells_follow_the_dense_cell_rule() -> None:
    cells = cell_targets([], grid_w=2, grid_h=2, cell=28)
    big = torch.tensor([20.0, 20.0, 50.0, 50.0])
    assert target_cells(cells.center, big, 28).tolist() == [False, False, False, True]
    straddling = torch.tensor([26.0, 0.0, 30.0, 3.0])  # half in cell 0, half in cell 1
    assert target_cells(cells.center, straddling, 28).tolist() == [True, True, False, False]
    # A box off the grid has no cell: every cell counts, so the loss asks nothing of the head.
    outside = torch.tensor([60.0, 0.0, 70.0, 10.0])
    assert target_cells(cells.center, outside, 28).all()


def test_loss_is_minus_log_of_the_heads_mass_on_the_target_cells() -> None:
    # Two rows of 4 image tokens (a 2x2 grid) between text tokens; query 5 is the last token.
    ids = torch.tensor([[1, IMG, IMG, IMG, IMG, 2], [0, IMG, IMG, IMG, IMG, 2]])
    obj = FrameObject((30.0, 30.0, 54.0, 54.0), color=0, shape=0)  # cell 3 of a 2x2 grid
    cells = cell_targets([obj], 2, 2, 28)
    both = type(cells).concat([cells, cell_targets([obj], 2, 2, 28)])
    attn = torch.zeros((2, 2, 6, 6))
    attn[0, 1, 5, 4] = 0.5  # head 1 of row 0, query 5: half its weight on cell 3 (key 4)
    attn[0, 1, 5, 0] = 0.5
    attn[1, 1, 5, 4] = 1.0
    index = torch.tensor([[0, 5], [1, 5]])
    boxes = torch.tensor([[30.0, 30.0, 54.0, 54.0]] * 2)
    loss = attention_loss(attn, 1, ids, IMG, index, boxes, both, 28)
    assert loss.item() == pytest.approx((-math.log(0.5 + 1e-6) - math.log(1 + 1e-6)) / 2)
    # Head 0 puts nothing there: the loss is large, and nothing to supervise gives 0.
    assert attention_loss(attn, 0, ids, IMG, index, boxes, both, 28).item() > 13
    assert attention_loss(attn, 1, ids, IMG, index[:0], boxes[:0], both, 28).item() == 0.0


def test_first_digit_weight_tilts_the_mean_toward_each_boxs_first_query() -> None:
    ids = torch.tensor([[1, IMG, IMG, IMG, IMG, 2, 3]])
    obj = FrameObject((30.0, 30.0, 54.0, 54.0), color=0, shape=0)
    cells = cell_targets([obj], 2, 2, 28)
    attn = torch.zeros((1, 1, 7, 7))
    attn[0, 0, 5, 4] = 0.25  # the first digit's query finds a quarter of the target
    attn[0, 0, 6, 4] = 1.0  # the next digit's query finds all of it
    index = torch.tensor([[0, 5], [0, 6]])
    boxes = torch.tensor([[30.0, 30.0, 54.0, 54.0]] * 2)
    first = torch.tensor([True, False])
    miss, hit = -math.log(0.25 + 1e-6), -math.log(1 + 1e-6)
    plain = attention_loss(attn, 0, ids, IMG, index, boxes, cells, 28, first, 1.0)
    tilted = attention_loss(attn, 0, ids, IMG, index, boxes, cells, 28, first, 3.0)
    assert plain.item() == pytest.approx((miss + hit) / 2)
    assert tilted.item() == pytest.approx((3 * miss + hit) / 4)
