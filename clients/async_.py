"""The asynchronous boxguard client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from boxguard.guards.types import OutputMode
from boxguard.guards.wire import Health

from .base import DEFAULT_TIMEOUT, BaseClient, GroundItem, normalize_item, progress_bar
from .errors import BoxguardError
from .images import ImageInput
from .results import GroundResult

__all__ = ["AsyncClient"]


async def _sleep(seconds: float) -> None:
    """Wait between retries (a seam for tests)."""
    await asyncio.sleep(seconds)


class AsyncClient(BaseClient):
    """Asynchronous client of a boxguard server (same API as ``Client``, awaited).

    Example:
        >>> from boxguard.clients import AsyncClient
        >>> async def main() -> None:  # doctest: +SKIP
        ...     async with AsyncClient("http://127.0.0.1:8000") as client:
        ...         result = await client.ground("street.jpg", "the red car")
        ...         print(result.status, result.boxes)
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
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(transport=transport, **self._client_kwargs())

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def health(self) -> Health:
        """Liveness of the server (GET /healthz); raises a BoxguardError if unreachable."""
        try:
            response = await self._http.get("/healthz")
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        return self._health(response, ready=False)

    async def ready(self) -> Health:
        """Readiness (GET /readyz): status 'ready' with the model name, or 'not_ready'."""
        try:
            response = await self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        return self._health(response, ready=True)

    async def ground(
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

        Example:
            >>> r = await client.ground("street.jpg", "the dog")  # doctest: +SKIP
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
                response = await self._http.post(
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
            await _sleep(delay)
            attempt += 1

    async def point(self, image: ImageInput, expression: str, **options: Any) -> GroundResult:
        """Ground `expression` as points (see ``Client.point``).

        Example:
            >>> r = await client.point("screen.png", "the search button")  # doctest: +SKIP
        """
        return await self.ground(image, expression, output="point", **options)

    async def ground_many(
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
        """Ground many items, at most `concurrency` in flight, results in input order.

        Same items and options as ``Client.ground_many``.

        Example:
            >>> results = await client.ground_many(pairs, concurrency=16)  # doctest: +SKIP
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        todo = [normalize_item(item) for item in items]
        gate = asyncio.Semaphore(concurrency)

        with progress_bar(len(todo), enabled=progress) as advance:

            async def one(item: GroundItem) -> GroundResult | BoxguardError:
                async with gate:
                    try:
                        return await self.ground(
                            item.image,
                            item.expression,
                            multiple=multiple if item.multiple is None else item.multiple,
                            think=think if item.think is None else item.think,
                            policy=policy if item.policy is None else item.policy,
                            timeout=timeout,
                            output=output,
                        )
                    except BoxguardError as exc:
                        if not return_exceptions:
                            raise
                        return exc
                    finally:
                        advance()

            tasks = [asyncio.ensure_future(one(item)) for item in todo]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
