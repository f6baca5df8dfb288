"""The server's names for the wire schema, which is defined once in `boxguard.guards.wire`.

The SDK imports `boxguard.guards.wire` directly; it never imports `boxguard.server`.
"""

from __future__ import annotations

from boxguard.guards.types import CheckResult, Detection
from boxguard.guards.wire import (
    MAX_EXPRESSION_CHARS,
    GroundRequest,
    GroundResponse,
    Health,
    ImageInfo,
    Problem,
)

__all__ = [
    "MAX_EXPRESSION_CHARS",
    "CheckResult",
    "Detection",
    "GroundRequest",
    "GroundResponse",
    "Health",
    "ImageInfo",
    "Problem",
]
