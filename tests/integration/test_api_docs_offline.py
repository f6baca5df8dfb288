"""/docs and /redoc work air-gapped (assets from the package), /healthz names what /readyz names."""

from __future__ import annotations

import re

import httpx

EXTERNAL_URL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _asset_paths(page: str) -> list[str]:
    """Every src/href of a page."""
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def test_docs_pages_name_no_external_url(live_server: str) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        r = httpx.get(live_server + path, timeout=30)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        assert not EXTERNAL_URL.findall(r.text), (path, EXTERNAL_URL.findall(r.text))


def test_docs_assets_are_served_by_the_server(live_server: str) -> None:
    swagger = httpx.get(live_server + "/docs", timeout=30).text
    redoc = httpx.get(live_server + "/redoc", timeout=30).text
    assets = _asset_paths(swagger) + _asset_paths(redoc)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("redoc.standalone.js") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        r = httpx.get(live_server + asset, timeout=30)
        assert r.status_code == 200 and len(r.content) > 1000, asset
    assert "SwaggerUIBundle" in httpx.get(live_server + "/docs-assets/swagger-ui-bundle.js").text
    assert '"validatorUrl": null' in swagger


def test_healthz_names_what_readyz_names(live_server: str) -> None:
    health = httpx.get(live_server + "/healthz", timeout=30)
    ready = httpx.get(live_server + "/readyz", timeout=30)
    assert health.status_code == 200 and ready.status_code == 200
    assert health.json()["status"] == "ok" and ready.json()["status"] == "ready"
    assert health.json()["model"] and health.json()["backend"] == "transformers"
    assert {k: health.json()[k] for k in ("model", "backend")} == {
        k: ready.json()[k] for k in ("model", "backend")
    }
