"""`boxguard serve`: settings from BOXGUARD_* env with CLI flags on top, then uvicorn."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    # uvicorn re-raises SIGTERM after draining; exit 0 then, as a clean shutdown should.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
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


@contextmanager
def serve_in_thread(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 300
) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread until the block exits; yields its URL.

    Example:
        >>> with serve_in_thread(create_app(Settings())) as url:  # doctest: +SKIP
        ...     httpx.get(url + "/readyz")
    """
    import httpx
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    base_url = f"http://{host}:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                if httpx.get(base_url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not become ready")
            time.sleep(0.1)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
