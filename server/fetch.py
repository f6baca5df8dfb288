"""Fetch `image_url` safely: allowlisted hosts, public addresses only, bounded size and time."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from .errors import ImageFetchFailed, ImageUrlRefused, PayloadTooLarge
from .settings import Settings

MAX_REDIRECTS = 3
# Longer URLs are no image links but probes; 2,048 is what browsers and CDNs reliably carry.
MAX_URL_CHARS = 2048
# Cloud metadata endpoints that sit outside the private ranges on some providers.
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


# NAT64 prefixes: the well-known one embeds an IPv4 in its last 32 bits (RFC 6052); the
# local-use one (RFC 8215) may embed it anywhere and is never globally meaningful.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries (NAT64, IPv4-compatible, 6to4, Teredo)."""
    found: list[ipaddress.IPv4Address] = []
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _is_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast by the registry's tables."""
    return ip.is_global and not ip.is_multicast


def _is_public(address: str) -> bool:
    """Globally routable unicast only: private, loopback, link-local, multicast, reserved and
    shared (100.64/10, where some clouds put metadata services) addresses are refused, as is
    an IPv6 address that reaches a non-public IPv4 through a translator or tunnel."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return _is_global(ip)
    if ip.ipv4_mapped is not None:
        return _is_global(ip.ipv4_mapped)
    if ip in _NAT64_LOCAL:
        return False
    return _is_global(ip) and all(_is_global(v4) for v4 in _embedded_ipv4(ip))


async def _resolve_public(host: str, port: int) -> str:
    """Resolve once; refuse if any address is not public (DNS rebinding gets one answer)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise ImageFetchFailed(f"cannot resolve {host!r}") from None
    found: set[str] = set()
    for *_, sockaddr in infos:
        address = sockaddr[0]
        if not isinstance(address, str):  # an (int, bytes) sockaddr is no IP address
            raise ImageUrlRefused(f"{host!r} resolves to a non-IP address")
        found.add(address)
    addresses = sorted(found)
    if not addresses or not all(_is_public(a) for a in addresses):
        raise ImageUrlRefused(f"{host!r} resolves to a non-public address")
    return addresses[0]


def check_url(url: str, settings: Settings) -> tuple[str, str, int]:
    """(scheme, host, port) of an allowed URL, else ImageUrlRefused; no DNS query is made."""
    if len(url) > MAX_URL_CHARS:
        raise ImageUrlRefused(f"image_url is longer than {MAX_URL_CHARS} characters")
    # urlsplit silently drops tabs and newlines ("exam\tple.com" becomes "example.com"), so
    # refuse control characters and whitespace before Python's URL cleaning can hide them.
    if not url.isprintable() or any(c.isspace() for c in url):
        raise ImageUrlRefused("image_url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port  # both raise ValueError on a bad netloc
    except ValueError:
        raise ImageUrlRefused("image_url is not a well-formed URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ImageUrlRefused("image_url must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ImageUrlRefused("image_url must not carry credentials")
    if port == 0:
        raise ImageUrlRefused("image_url has port 0")
    host = hostname.lower().rstrip(".")
    allowed = {h.lower().rstrip(".") for h in settings.image_url_allowlist}
    if host in _METADATA_HOSTS or host not in allowed:
        raise ImageUrlRefused(f"host {host!r} is not in the server's image_url allowlist")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def _pinned_url(url: str, address: str) -> str:
    """The URL with its host replaced by the checked address (port, path and query kept)."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def _redirect_target(url: str, location: str) -> str:
    """The absolute URL a redirect points to; checked by check_url on the next round."""
    try:
        return urljoin(url, location)
    except ValueError:  # urljoin parses the netloc: "http://[::1/" raises here
        raise ImageUrlRefused("image_url redirected to a malformed URL") from None


async def fetch_image(url: str, settings: Settings, *, timeout_s: float = 10.0) -> bytes:
    """Download an image within the body limit and `timeout_s` in total, following at most a
    few redirects, each checked like the first URL."""
    try:
        return await asyncio.wait_for(_fetch(url, settings, timeout_s), timeout_s)
    except asyncio.TimeoutError:
        raise ImageFetchFailed(f"image_url did not answer within {timeout_s:g} s") from None


async def _fetch(url: str, settings: Settings, timeout_s: float) -> bytes:
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            scheme, host, port = check_url(url, settings)
            address = await _resolve_public(host, port)
            # Connect to the address we checked (no second lookup); Host and SNI keep the name.
            extensions = {"sni_hostname": host} if scheme == "https" else {}
            try:
                async with client.stream(
                    "GET",
                    _pinned_url(url, address),
                    headers={"Host": host},
                    extensions=extensions,
                ) as response:
                    if response.is_redirect:
                        url = _redirect_target(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise ImageFetchFailed(f"image_url answered {response.status_code}")
                    data = bytearray()
                    async for chunk in response.aiter_bytes():
                        data.extend(chunk)
                        if len(data) > settings.max_body_bytes:
                            raise PayloadTooLarge("the image at image_url is over the size limit")
                    return bytes(data)
            except httpx.HTTPError:
                raise ImageFetchFailed("image_url could not be fetched") from None
    raise ImageFetchFailed("too many redirects")
