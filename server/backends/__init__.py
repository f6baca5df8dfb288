"""Backends, selected by name through a registry; heavy imports happen only when one is built."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import (
    NOT_STARTED,
    Backend,
    BackendDead,
    BackendError,
    BackendHealth,
    Completion,
    Generation,
    GenerationRequest,
    QueueFull,
    TokenChoice,
    UpstreamInvalid,
)

if TYPE_CHECKING:
    from ..models import ModelAdapter
    from ..settings import Settings

# name -> "module:class"; modules are imported only when that backend is built.
BACKENDS: dict[str, str] = {
    "transformers": "boxguard.server.backends.transformers_backend:TransformersBackend",
    "vllm": "boxguard.server.backends.vllm_backend:VLLMBackend",
    "openai": "boxguard.server.backends.openai_backend:OpenAIBackend",
}


def create_backend(settings: Settings, model_dir: str, adapter: ModelAdapter) -> Backend:
    """Build the backend named in settings (not started yet)."""
    if settings.backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {settings.backend!r}; choose one of: {', '.join(BACKENDS)}"
        )
    module_name, class_name = BACKENDS[settings.backend].split(":")
    module = importlib.import_module(module_name)
    backend: Backend = getattr(module, class_name)(settings, model_dir, adapter)
    return backend


__all__ = [
    "BACKENDS",
    "NOT_STARTED",
    "Backend",
    "BackendHealth",
    "BackendDead",
    "BackendError",
    "Completion",
    "Generation",
    "GenerationRequest",
    "QueueFull",
    "TokenChoice",
    "UpstreamInvalid",
    "create_backend",
]
