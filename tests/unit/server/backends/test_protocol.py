"""Both backends implement every member of the Backend protocol, with the same signatures."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("torch")

from boxguard.server.backends.base import Backend  # noqa: E402
from boxguard.server.backends.transformers_backend import TransformersBackend  # noqa: E402
from boxguard.server.backends.vllm_backend import VLLMBackend  # noqa: E402

MEMBERS = ("name", "ready", "queue_depth", "start", "stop", "generate", "abort")


@pytest.mark.parametrize("cls", [TransformersBackend, VLLMBackend])
def test_backend_implements_the_whole_protocol(cls: type) -> None:
    for member in MEMBERS:
        assert hasattr(Backend, member) and hasattr(cls, member), member
    for prop in ("ready", "queue_depth"):
        assert isinstance(inspect.getattr_static(cls, prop), property), prop
    for method in ("start", "stop", "generate", "abort"):
        ours = inspect.signature(getattr(cls, method))
        theirs = inspect.signature(getattr(Backend, method))
        assert inspect.iscoroutinefunction(getattr(cls, method)), method
        assert list(ours.parameters) == list(theirs.parameters), method
