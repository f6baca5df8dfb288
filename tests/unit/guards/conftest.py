"""Fixtures for the guards unit tests."""

from __future__ import annotations

import pytest
from boxguard.guards import Policy


@pytest.fixture
def lexicon_only() -> Policy:
    """A policy that never uses the embedding extra, so results do not depend on installs."""
    return Policy(label_embeddings=False)
