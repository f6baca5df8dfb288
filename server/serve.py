"""`boxguard serve`: settings from BOXGUARD_* env with CLI flags on top, then uvicorn."""

from __future__ import annotations

import logging
from typing import Any

from .settings import Settings


def build_settings(overrides: dict[str, Any]) -> Settings:
    """Env first, then every CLI flag that was given (None = not given)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)


def run(overrides: dict[str, Any]) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn drains in-flight requests before exiting."""
    import uvicorn

    from .app import create_app

    settings = build_settings(overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.request_timeout_s),
    )
