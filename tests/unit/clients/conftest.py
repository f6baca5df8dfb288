"""Fixtures of the SDK unit tests."""

from __future__ import annotations

import pytest
from boxguard.clients import async_, sync


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the retry sleeps of the sync client instead of sleeping."""
    calls: list[float] = []
    monkeypatch.setattr(sync, "_sleep", calls.append)
    return calls


@pytest.fixture
def async_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the retry sleeps of the async client instead of sleeping."""
    calls: list[float] = []

    async def record(seconds: float) -> None:
        calls.append(seconds)

    monkeypatch.setattr(async_, "_sleep", record)
    return calls
