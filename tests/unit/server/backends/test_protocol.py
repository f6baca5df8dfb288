"""Both backends implement every member of the Backend protocol, with the same signatures."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("torch")

from boxguard.server.backends.base import Backend  # noqa: E402
from boxguard.server.backends.transformers_backend import TransformersBackend  # noqa: E402
from boxguard.server.backends.vllm_backend import VLLMBackend  # noqa: E402

MEMBERS = ("name", "health", "ready", "queue_depth", "start", "stop", "generate")


@pytest.mark.parametrize("cls", [TransformersBackend, VLLMBackend])
def test_backend_implements_the_whole_protocol(cls: type) -> None:
    declared = set(Backend.__annotations__) | {k for k in vars(Backend) if not k.startswith("_")}
    assert declared == set(MEMBERS)
    for member in MEMBERS:
        assert hasattr(cls, member), member
    for prop in ("health", "ready", "queue_depth"):
        assert isinstance(inspect.getattr_static(cls, prop), property), prop
    for method in ("start", "stop", "generate"):
        ours = inspect.signature(getattr(cls, method))
        theirs = inspect.signature(getattr(Backend, method))
        assert inspect.iscoroutinefunction(getattr(cls, method)), method
        assert list(ours.parameters) == list(theirs.parameters), method
