"""The auxiliary position loss: targets follow the image-token order of the grid."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from boxguard.demo.train_aux import (  # noqa: E402
    GRID_SCALE,
    REGRESSION_LOSSES,
    AuxHeads,
    position_loss,
    position_targets,
)

IMG = 7


def test_targets_are_row_major_cells_of_each_image() -> None:
    # Two rows: a 2x3-token image (grid 4x6 patches) and a 1x2-token image, left-padded.
    ids = torch.tensor([[1, IMG, IMG, IMG, IMG, IMG, IMG, 2], [0, 0, 0, 0, 1, IMG, IMG, 2]])
    grid = torch.tensor([[1, 4, 6], [1, 2, 4]])
    mask, targets = position_targets(ids, grid, IMG, merge_size=2)
    assert mask.sum() == 8
    cells = (targets * GRID_SCALE - 0.5).round().int().tolist()
    assert cells == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1], [0, 0], [1, 0]]


def test_loss_is_zero_for_a_perfect_probe_and_rejects_a_grid_mismatch() -> None:
    ids = torch.tensor([[IMG, IMG, IMG, IMG]])
    grid = torch.tensor([[1, 4, 4]])
    _, targets = position_targets(ids, grid, IMG, merge_size=2)
    probe = AuxHeads(2).position
    with torch.no_grad():
        probe.weight.copy_(torch.eye(2))
        probe.bias.zero_()
    hidden = targets.view(1, 4, 2)
    assert position_loss(probe, hidden, ids, grid, IMG, 2).item() == pytest.approx(0.0)
    assert position_loss(probe, hidden + 0.1, ids, grid, IMG, 2).item() == pytest.approx(0.01)
    l1 = REGRESSION_LOSSES["l1"]
    assert position_loss(probe, hidden + 0.1, ids, grid, IMG, 2, l1).item() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="grid cells"):
        position_loss(probe, hidden, ids, torch.tensor([[1, 2, 2]]), IMG, 2)
