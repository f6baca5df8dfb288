"""Fixtures of the server unit tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No BOXGUARD_* variable of the caller's environment leaks into Settings."""
    for name in list(os.environ):
        if name.upper().startswith("BOXGUARD_"):
            monkeypatch.delenv(name)
    return monkeypatch
