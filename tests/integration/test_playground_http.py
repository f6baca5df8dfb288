"""The playground's pages, assets and samples over HTTP: self-contained, open, no external URL."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from importlib.resources import files
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from PIL import Image

START_PAGES = ("/", "/playground")
# The review page (recorded answers) is its own page: crawled too, not the playground.
REVIEW_PAGE = "/playground/review"
# What a document loads: an href/src attribute, a CSS url(...), a JS module import.
LINKS = re.compile(
    r"""(?:href|src)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)|from\s+["']([^"']+)["']"""
)
ABSOLUTE = re.compile(r"""(?:https?:)?//[^\s"'`<>()]+""")
TEXT_TYPES = ("text/html", "text/css", "text/javascript", "application/javascript")


def crawl(base: str) -> dict[str, httpx.Response]:
    """Every HTML, CSS and JS document reachable from the start pages, by path."""
    seen: dict[str, httpx.Response] = {}
    todo = [*START_PAGES, REVIEW_PAGE]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        response = httpx.get(base + path)
        assert response.status_code == 200, (path, response.status_code)
        seen[path] = response
        if not response.headers["content-type"].startswith(TEXT_TYPES):
            continue
        for match in LINKS.finditer(response.text):
            link = next(group for group in match.groups() if group)
            if link.startswith(("data:", "#")):
                continue
            target = urlsplit(urljoin(base + path, link))
            if target.netloc == urlsplit(base).netloc:
                todo.append(target.path)
    return seen


def test_every_page_asset_is_served_and_names_no_other_host(live_server: str) -> None:
    documents = crawl(live_server)
    text_docs = {
        path: r.text
        for path, r in documents.items()
        if r.headers["content-type"].startswith(TEXT_TYPES)
    }
    # Everything in the package's static folder is reached (so everything is checked).
    static = {f.name for f in (files("boxguard.server") / "static").iterdir() if f.is_file()}
    pages = {"playground.html", "review.html"}  # served at their page paths
    reached = {path.rsplit("/", 1)[-1] for path in text_docs} | pages
    assert static <= reached, static - reached
    host = urlsplit(live_server).netloc
    for path, text in text_docs.items():
        external = [u for u in ABSOLUTE.findall(text) if urlsplit(u).netloc not in ("", host)]
        assert not external, (path, external)


def test_pages_assets_and_samples_have_their_media_types(live_server: str) -> None:
    for path in START_PAGES:
        r = httpx.get(live_server + path)
        assert r.headers["content-type"].startswith("text/html")
        assert "playground/assets/playground.js" in r.text
    js = httpx.get(live_server + "/playground/assets/playground.js")
    assert js.headers["content-type"].startswith("text/javascript")
    config = httpx.get(live_server + "/playground/config").json()
    assert config["api_key_required"] is False
    for sample in config["samples"]:
        r = httpx.get(f"{live_server}/{sample['url']}")
        assert r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).format == "PNG"


@pytest.mark.parametrize("path", ["/playground/assets/app.py", "/playground/samples/nope.png"])
def test_unknown_assets_are_404_problems(live_server: str, path: str) -> None:
    r = httpx.get(live_server + path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"


def test_playground_is_not_in_the_openapi_schema(live_server: str) -> None:
    paths = httpx.get(live_server + "/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/playground")]


@pytest.fixture(scope="module")
def keyed_server(server_settings: object) -> Iterator[str]:
    from boxguard.server.app import create_app
    from support import serve_in_thread

    settings = server_settings.model_copy(update={"api_keys": ["k1"]})  # type: ignore[attr-defined]
    with serve_in_thread(create_app(settings)) as url:
        yield url


def test_with_api_keys_the_page_stays_open_and_the_api_does_not(keyed_server: str) -> None:
    for path in crawl(keyed_server):
        assert httpx.get(keyed_server + path).status_code == 200, path
    config = httpx.get(keyed_server + "/playground/config").json()
    assert config["api_key_required"] is True
    sample = httpx.get(f"{keyed_server}/{config['samples'][0]['url']}")
    assert sample.status_code == 200
    r = httpx.post(
        keyed_server + "/ground",
        files={"image": ("s.png", sample.content)},
        data={"expression": "the red circle"},
    )
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    # Paths that merely start like the page's are not opened by it.
    assert httpx.get(keyed_server + "/playgroundx").status_code == 401
