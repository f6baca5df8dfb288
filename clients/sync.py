"""The synchronous boxguard client."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx
from boxguard.guards.types import OutputMode
from boxguard.guards.wire import Health

from .base import DEFAULT_TIMEOUT, BaseClient, GroundItem, normalize_item, progress_bar
from .errors import BoxguardError
from .images import ImageInput
from .results import GroundResult

__all__ = ["Client"]


def _sleep(seconds: float) -> None:
    """Wait between retries (a seam for tests)."""
    time.sleep(seconds)


class Client(BaseClient):
    """Synchronous client of a boxguard server.

    Example:
        >>> from boxguard.clients import Client
        >>> with Client("http://127.0.0.1:8000") as client:  # doctest: +SKIP
        ...     result = client.ground("street.jpg", "the red car on the left")
        ...     if result.accepted:
        ...         print(result.boxes)
        ...     else:
        ...         print("abstained:", result.reasons)
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key=api_key,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            headers=headers,
        )
        self._http = httpx.Client(transport=transport, **self._client_kwargs())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def health(self) -> Health:
        """Liveness of the server (GET /healthz); raises a BoxguardError if unreachable."""
        try:
            response = self._http.get("/healthz")
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        return self._health(response, ready=False)

    def ready(self) -> Health:
        """Readiness (GET /readyz): status 'ready' with the model name, or 'not_ready'."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        return self._health(response, ready=True)

    def ground(
        self,
        image: ImageInput,
        expression: str,
        *,
        multiple: bool = False,
        think: bool = False,
        policy: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        return_raw: bool = False,
        request_id: str | None = None,
        upload: bool = False,
        output: OutputMode = "box",
    ) -> GroundResult:
        """Ground `expression` in `image`: verified boxes or an abstention with reasons.

        `image` is a path, bytes, PIL image, numpy array or http(s) URL; `policy` overrides the
        server's guard policy within its bounds; `timeout` (seconds) overrides the client's;
        `request_id` is sent as X-Request-ID (kept across retries); `upload` sends the image as a
        multipart file part instead of base64 JSON. Raises a ``BoxguardError``
        subclass on failure, after retries on connection errors, 429 and 503.

        Example:
            >>> r = client.ground("street.jpg", "every bicycle", multiple=True)  # doctest: +SKIP
            >>> [d.confidence for d in r.detections]  # doctest: +SKIP
            [0.91, 0.84]
        """
        body = self._payload(
            image,
            expression,
            multiple=multiple,
            think=think,
            policy=policy,
            return_raw=return_raw,
            output=output,
        )
        sent = self._body_kwargs(body, upload)
        request_timeout = self._request_timeout(timeout, self.timeout)
        headers = self._call_headers(request_id)
        attempt = 0
        while True:
            try:
                response = self._http.post(
                    "/ground", **sent, headers=headers, timeout=request_timeout
                )
            except httpx.TransportError as exc:
                outcome: GroundResult | BoxguardError = self._transport_error(exc)
            else:
                outcome = self._outcome(response)
            if isinstance(outcome, GroundResult):
                return outcome
            delay = self._retry_delay(attempt, outcome)
            if delay is None:
                raise outcome
            _sleep(delay)
            attempt += 1

    def point(self, image: ImageInput, expression: str, **options: Any) -> GroundResult:
        """Ground `expression` as points: where to click or grasp, verified like boxes.

        Takes ``ground``'s options; each detection carries `point` (x, y) in image pixels.

        Example:
            >>> r = client.point("screen.png", "the search button")  # doctest: +SKIP
            >>> r.top.point if r.accepted else r.reasons  # doctest: +SKIP
            (1843.0, 211.0)
        """
        return self.ground(image, expression, output="point", **options)

    def _ground_item(self, item: GroundItem, defaults: dict[str, Any]) -> GroundResult:
        """Ground one ground_many item, its own options over the call's defaults."""
        return self.ground(
            item.image,
            item.expression,
            multiple=defaults["multiple"] if item.multiple is None else item.multiple,
            think=defaults["think"] if item.think is None else item.think,
            policy=defaults["policy"] if item.policy is None else item.policy,
            timeout=defaults["timeout"],
            output=defaults["output"],
        )

    def ground_many(
        self,
        items: Iterable[Any],
        *,
        concurrency: int = 8,
        progress: bool = True,
        return_exceptions: bool = False,
        multiple: bool = False,
        think: bool = False,
        policy: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        output: OutputMode = "box",
    ) -> list[GroundResult | BoxguardError]:
        """Ground many (image, expression) items, at most `concurrency` at a time, in order.

        Items are ``(image, expression)`` pairs, dicts with ``image``, ``expression`` and optional
        ``multiple``/``think``/``policy``, or ``GroundItem``. With ``return_exceptions=True`` a
        failed item yields its ``BoxguardError`` in place of a result; otherwise the first
        failure is raised. A rich progress bar is shown on stderr unless ``progress=False``.

        Example:
            >>> results = client.ground_many(  # doctest: +SKIP
            ...     [("a.jpg", "the dog"), ("b.jpg", "the cat")], concurrency=4)
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        todo = [normalize_item(item) for item in items]
        defaults = {
            "multiple": multiple,
            "think": think,
            "policy": policy,
            "timeout": timeout,
            "output": output,
        }
        results: list[GroundResult | BoxguardError | None] = [None] * len(todo)
        with (
            progress_bar(len(todo), enabled=progress) as advance,
            ThreadPoolExecutor(max_workers=concurrency) as pool,
        ):
            futures: dict[Future[GroundResult], int] = {
                pool.submit(self._ground_item, item, defaults): i for i, item in enumerate(todo)
            }
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = futures[future]
                        try:
                            results[index] = future.result()
                        except BoxguardError as exc:
                            if not return_exceptions:
                                raise
                            results[index] = exc
                        advance()
            finally:
                for future in pending:
                    future.cancel()
        return [r for r in results if r is not None]
