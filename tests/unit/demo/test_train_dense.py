"""Dense per-cell training targets and loss: which cells an object covers, and exact offsets."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from boxguard.demo.train_aux import BOX_SCALE  # noqa: E402
from boxguard.demo.train_dense import (  # noqa: E402
    IGNORE,
    CellTargets,
    DenseHeads,
    FrameObject,
    cell_targets,
    dense_loss,
)

IMG = 7


def test_a_cell_belongs_to_the_object_that_covers_enough_of_it() -> None:
    small = FrameObject((5.0, 5.0, 20.0, 20.0), color=2, shape=4)  # inside cell 0
    big = FrameObject((20.0, 20.0, 50.0, 50.0), color=0, shape=1)  # mostly cell 3
    t = cell_targets([small, big], grid_w=2, grid_h=2, cell=28)
    assert t.covered.tolist() == [True, False, False, True]
    assert t.color.tolist() == [3, 0, 0, 1] and t.shape.tolist() == [5, 0, 0, 2]
    assert t.box[3].tolist() == [20.0, 20.0, 50.0, 50.0]
    assert t.center.tolist() == [[14, 14], [42, 14], [14, 42], [42, 42]]


def test_unknown_objects_give_no_class_targets() -> None:
    t = cell_targets(None, grid_w=3, grid_h=1, cell=28)
    assert t.color.tolist() == [IGNORE] * 3 and not t.covered.any()
    both = CellTargets.concat([t, cell_targets([], 1, 1, 28)])
    assert both.color.tolist() == [IGNORE] * 3 + [0]


def test_loss_of_exact_offsets_and_boxes_is_the_uniform_class_loss() -> None:
    obj = FrameObject((10.0, 30.0, 40.0, 50.0), color=1, shape=2)
    t = cell_targets([obj], grid_w=2, grid_h=2, cell=28)
    ids = torch.tensor([[1, IMG, IMG, IMG, IMG]])
    heads = DenseHeads(4)
    with torch.no_grad():
        for lin in (heads.offsets, heads.box):
            lin.weight.copy_(torch.eye(4))
            lin.bias.zero_()
        heads.classes.weight.zero_()
        heads.classes.bias.zero_()
    cx, cy = t.center.unbind(1)
    b = t.box
    offsets = torch.stack([cx - b[:, 0], cy - b[:, 1], b[:, 2] - cx, b[:, 3] - cy], 1) / 28
    embeds = torch.cat([torch.zeros(1, 1, 4), offsets.view(1, 4, 4)], 1)
    middle = torch.cat([torch.zeros(1, 1, 4), (b / BOX_SCALE).view(1, 4, 4)], 1)
    uniform = math.log(7) + math.log(6)
    loss = dense_loss(heads, embeds, middle, ids, IMG, t, 28)
    assert loss.item() == pytest.approx(uniform, abs=1e-5)
    # Cell 2 (x 0-28, y 28-56) and cell 3 are covered; 1 px off everywhere adds 1/28^2.
    assert t.covered.tolist() == [False, False, True, True]
    worse = dense_loss(heads, embeds + 1 / 28, middle, ids, IMG, t, 28)
    assert worse.item() == pytest.approx(uniform + 1 / 28**2, abs=1e-5)
    with pytest.raises(ValueError, match="3 cells"):
        dense_loss(heads, embeds, middle, ids, IMG, cell_targets(None, 3, 1, 28), 28)
