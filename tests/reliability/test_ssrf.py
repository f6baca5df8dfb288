"""image_url: off by default; when on, allowlisted hosts, public addresses only (also after
redirects), DNS resolved once, size and time limits (server/fetch.py)."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from boxguard.server import fetch
from boxguard.server.errors import ImageFetchFailed, ImageUrlRefused, PayloadTooLarge
from boxguard.server.settings import Settings
from rel_support import assert_problem
from support import png_bytes

PNG = png_bytes((32, 32))


def settings(*hosts: str, max_body_bytes: int = 1024 * 1024) -> Settings:
    return Settings(
        image_url_enabled=True, image_url_allowlist=list(hosts), max_body_bytes=max_body_bytes
    )


# --- check_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://img.example/a.png",
        "file:///etc/passwd",
        "gopher://img.example/",
        "http:///a.png",
        "http://user:pw@img.example/a.png",
        "http://evil.example/a.png",
        "http://img.example.evil.example/a.png",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://169.254.169.254/latest/meta-data/",
        "javascript:alert(1)",
        "",
    ],
)
def test_check_url_refuses(url: str) -> None:
    allow = settings("img.example", "metadata.google.internal")
    with pytest.raises(ImageUrlRefused):
        fetch.check_url(url, allow)


MALFORMED_URLS = [
    "http://img.example:99999/a.png",
    "http://img.example:-1/a.png",
    "http://img.example:0/a.png",
    "http://img.example:8o/a.png",
    "http://[::1/a.png",
    "http://[img.example]/a.png",
    "http://[::1]x/a.png",
    "http://img.ex\tample/a.png",  # urlsplit would strip the tab: "img.example"
    "http://img.ex\nample/a.png",
    "http://img.example/a.png\r\nX-Injected: 1",
    "http://img.example/a b.png",
    "http://img.example/a\x00.png",
    "http://img.example/a\x7f.png",
    "http://img.example/a\u2028.png",
    " http://img.example/a.png",
    "http://img.example/" + "a" * 100_000,
    "http://@img.example/a.png",
]


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_malformed_urls_are_refused_not_crashed(url: str) -> None:
    with pytest.raises(ImageUrlRefused):
        fetch.check_url(url, settings("img.example"))


@pytest.mark.parametrize("url", MALFORMED_URLS)
async def test_malformed_urls_are_refused_before_any_lookup(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        asyncio.get_running_loop(),
        "getaddrinfo",
        _fake_getaddrinfo({"img.example": ["93.184.216.34"]}, calls),
    )
    with pytest.raises(ImageUrlRefused):
        await fetch.fetch_image(url, settings("img.example"))
    assert calls == []


def test_check_url_normalises_the_host() -> None:
    allow = settings("IMG.example.")
    assert fetch.check_url("http://img.EXAMPLE./a.png", allow) == ("http", "img.example", 80)
    assert fetch.check_url("https://img.example:8443/a", allow) == ("https", "img.example", 8443)
    assert fetch.check_url("https://img.example/a", allow)[2] == 443


# --- _is_public ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "0.0.0.0",
        "255.255.255.255",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not fetch._is_public(address)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::10.0.0.1",
        "64:ff9b::100.64.0.1",
        "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215)
        "64:ff9b:1:7f00:1::",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",
        "2002:c0a8:101::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45
        "2001:0:808:808:0:0:80ff:fffe",  # Teredo via 8.8.8.8 to 127.0.0.1
        "2001:0:a00:1::1",  # Teredo server 10.0.0.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::a9fe:a9fe",
    ],
)
def test_ipv6_embedding_a_non_public_ipv4_is_refused(address: str) -> None:
    assert not fetch._is_public(address)


async def test_a_nat64_answer_for_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def nat64(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("64:ff9b::7f00:1", port, 0, 0))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", nat64)
    with pytest.raises(ImageUrlRefused, match="non-public"):
        await fetch._resolve_public("img.example", 80)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of a public address: the translator reaches the internet
        "2002:808:808::1",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert fetch._is_public(address)


@pytest.mark.parametrize("address", ["100.100.100.200", "100.64.0.1"])
def test_cloud_metadata_in_shared_space_is_refused(address: str) -> None:
    assert not fetch._is_public(address)


# --- _resolve_public ------------------------------------------------------------------------


def _fake_getaddrinfo(table: dict[str, list[str]], calls: list[str]) -> Any:
    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        calls.append(host)
        if host not in table:
            raise socket.gaierror("no such host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]

    return getaddrinfo


async def test_resolve_public_refuses_any_private_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(
        loop,
        "getaddrinfo",
        _fake_getaddrinfo(
            {
                "mixed.test": ["93.184.216.34", "127.0.0.1"],
                "meta.test": ["169.254.169.254"],
                "ok.test": ["93.184.216.34"],
            },
            calls,
        ),
    )
    for host in ("mixed.test", "meta.test"):
        with pytest.raises(ImageUrlRefused):
            await fetch._resolve_public(host, 80)
    with pytest.raises(ImageFetchFailed):
        await fetch._resolve_public("nxdomain.test", 80)
    assert await fetch._resolve_public("ok.test", 80) == "93.184.216.34"


async def test_resolve_public_refuses_a_non_ip_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    async def packet_sockaddr(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (17, socket.SOCK_STREAM, 0, "", (3, b"\x00\x11")),
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", packet_sockaddr)
    with pytest.raises(ImageUrlRefused, match="non-IP"):
        await fetch._resolve_public("odd.test", 80)


async def test_resolve_public_refuses_localhost() -> None:
    with pytest.raises(ImageUrlRefused):
        await fetch._resolve_public("localhost", 80)


# --- fetch_image against a local HTTP server --------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    slow_paths: set[str] = set()
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        if self.path in self.slow_paths:  # trickles one byte every 0.3 s
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass
            return
        status, headers, body = self.routes.get(self.path, (404, {}, b"nope"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_origin() -> Iterator[tuple[str, int]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    _Handler.routes = {
        "/a.png": (200, {"Content-Type": "image/png"}, PNG),
        "/big": (200, {}, b"x" * 5000),
        "/to-outside": (302, {"Location": "http://evil.example/a.png"}, b""),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/to-metadata-name": (302, {"Location": "http://metadata.google.internal/x"}, b""),
        "/to-a": (301, {"Location": "/a.png"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/500": (500, {}, b"boom"),
        "/to-bad-port": (302, {"Location": "http://127.0.0.1:99999/a.png"}, b""),
        "/to-negative-port": (302, {"Location": "http://127.0.0.1:-1/a.png"}, b""),
        "/to-open-bracket": (302, {"Location": "http://[::1/a.png"}, b""),
        "/to-name-in-brackets": (302, {"Location": "http://[127.0.0.1]/a.png"}, b""),
        "/to-long": (302, {"Location": "/" + "a" * 4000}, b""),
    }
    _Handler.slow_paths = {"/slow"}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", port
    server.shutdown()


async def test_local_http_server_is_refused_as_loopback(http_origin: tuple[str, int]) -> None:
    host, port = http_origin
    hits = len(_Handler.hits)
    for allowed, url in (
        (host, f"http://{host}:{port}/a.png"),
        ("localhost", f"http://localhost:{port}/a.png"),
    ):
        with pytest.raises(ImageUrlRefused):
            await fetch.fetch_image(url, settings(allowed))
    assert len(_Handler.hits) == hits  # never connected


@pytest.fixture()
def loopback_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat 127.0.0.1 (only) as public, to exercise the success path and the redirects."""
    real = fetch._is_public
    monkeypatch.setattr(fetch, "_is_public", lambda a: a == "127.0.0.1" or real(a))


@pytest.mark.usefixtures("loopback_is_public")
async def test_fetch_success_and_relative_redirect(http_origin: tuple[str, int]) -> None:
    host, port = http_origin
    allow = settings(host)
    assert await fetch.fetch_image(f"http://{host}:{port}/a.png", allow) == PNG
    assert await fetch.fetch_image(f"http://{host}:{port}/to-a", allow) == PNG


@pytest.mark.usefixtures("loopback_is_public")
@pytest.mark.parametrize("path", ["/to-outside", "/to-metadata", "/to-metadata-name"])
async def test_redirects_out_of_bounds_are_refused(http_origin: tuple[str, int], path: str) -> None:
    host, port = http_origin
    # Even with the metadata address allowlisted, a redirect there is refused.
    allow = settings(host, "169.254.169.254", "metadata.google.internal")
    with pytest.raises(ImageUrlRefused):
        await fetch.fetch_image(f"http://{host}:{port}{path}", allow)


@pytest.mark.usefixtures("loopback_is_public")
@pytest.mark.parametrize(
    "path",
    ["/to-bad-port", "/to-negative-port", "/to-open-bracket", "/to-name-in-brackets", "/to-long"],
)
async def test_malformed_redirects_are_refused(http_origin: tuple[str, int], path: str) -> None:
    host, port = http_origin
    hits = len(_Handler.hits)
    # httpx itself rejects some Locations (422); the rest fail check_url (403): never a 500.
    with pytest.raises((ImageUrlRefused, ImageFetchFailed)):
        await fetch.fetch_image(f"http://{host}:{port}{path}", settings(host))
    assert _Handler.hits[hits:] == [path]  # the redirect was not followed


@pytest.mark.usefixtures("loopback_is_public")
async def test_redirect_loop_size_and_status_limits(http_origin: tuple[str, int]) -> None:
    host, port = http_origin
    with pytest.raises(ImageFetchFailed):
        await fetch.fetch_image(f"http://{host}:{port}/loop", settings(host))
    with pytest.raises(PayloadTooLarge):
        await fetch.fetch_image(f"http://{host}:{port}/big", settings(host, max_body_bytes=1024))
    with pytest.raises(ImageFetchFailed):
        await fetch.fetch_image(f"http://{host}:{port}/500", settings(host))


@pytest.mark.usefixtures("loopback_is_public")
async def test_stalled_origin_times_out(http_origin: tuple[str, int]) -> None:
    host, port = http_origin
    # A handler that never answers: the read timeout ends it.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        started = time.monotonic()
        with pytest.raises(ImageFetchFailed):
            await fetch.fetch_image(
                f"http://127.0.0.1:{sock.getsockname()[1]}/x", settings("127.0.0.1"), timeout_s=0.5
            )
        assert time.monotonic() - started < 5
    finally:
        sock.close()


@pytest.mark.slow
@pytest.mark.usefixtures("loopback_is_public")
async def test_trickling_origin_is_bounded_in_total(http_origin: tuple[str, int]) -> None:
    host, port = http_origin
    started = time.monotonic()
    with pytest.raises((ImageFetchFailed, PayloadTooLarge)):
        await asyncio.wait_for(
            fetch.fetch_image(f"http://{host}:{port}/slow", settings(host), timeout_s=1.0), 8
        )
    assert time.monotonic() - started < 4  # 4 x timeout_s at most


async def test_the_checked_address_is_the_one_connected(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    calls: list[str] = []
    monkeypatch.setattr(
        loop, "getaddrinfo", _fake_getaddrinfo({"img.example": ["93.184.216.34"]}, calls)
    )
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return httpx.Response(200, content=PNG)

    real_client = httpx.AsyncClient

    def client(**kwargs: Any) -> httpx.AsyncClient:
        return real_client(transport=httpx.MockTransport(handler), **kwargs)

    monkeypatch.setattr(fetch.httpx, "AsyncClient", client)
    for url in ("http://img.example/a.png", "http://IMG.Example/a.png"):
        assert await fetch.fetch_image(url, settings("img.example")) == PNG
    assert seen == ["93.184.216.34", "93.184.216.34"], seen


# --- through the server ---------------------------------------------------------------------


def test_image_url_is_disabled_by_default(live_server: str) -> None:
    r = httpx.post(
        live_server + "/ground",
        json={"image_url": "http://169.254.169.254/", "expression": "x"},
        timeout=30,
    )
    assert_problem(r, 403, "image_url_disabled")


def test_image_url_to_loopback_is_refused_by_the_server(
    tiny_checkpoint: Any, http_origin: tuple[str, int]
) -> None:
    from boxguard.server.app import create_app
    from support import serve_in_thread

    host, port = http_origin
    app = create_app(
        Settings(
            model=str(tiny_checkpoint),
            image_url_enabled=True,
            image_url_allowlist=[host, "localhost"],
            max_new_tokens=8,
        )
    )
    with serve_in_thread(app) as url:
        for target in (
            f"http://{host}:{port}/a.png",
            f"http://localhost:{port}/a.png",
            "http://evil.example/a.png",
            f"http://{host}:99999/a.png",
            "http://[::1/a.png",
            f"http://{host}/a\r\n.png",
        ):
            r = httpx.post(
                url + "/ground", json={"image_url": target, "expression": "x"}, timeout=30
            )
            assert_problem(r, 403, "image_url_refused")
