"""The web playground: one static page at `/` and `/playground`, its assets and sample scenes.

Everything the page needs is served from this package (no CDN, no build step), so it works
air-gapped. The page holds no data, so it stays open when API keys are on; its requests to
`/ground` carry the key the user types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

from boxguard.guards import Policy
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .settings import Settings

PAGE_PATHS = ("/", "/playground")
ASSET_PREFIX = "/playground/"  # the page's assets, config and sample scenes

_STATIC = files("boxguard.server") / "static"
# Each asset the page loads, with its media type; nothing else under static/ is served.
_JS = "text/javascript; charset=utf-8"
ASSETS = {
    "playground.css": "text/css; charset=utf-8",
    "playground.js": _JS,
    "dom.js": _JS,
    "result.js": _JS,
    "snippets.js": _JS,
}
# The page is static and tiny: revalidate each time so an upgraded server is never stale.
_REVALIDATE = {"Cache-Control": "no-cache"}


@dataclass(frozen=True)
class SampleScene:
    """A bundled scene and the expressions the page suggests for it."""

    title: str
    expressions: tuple[str, ...]  # the first is filled in when the scene is picked


def _load_samples() -> dict[str, SampleScene]:
    """The scenes of static/samples/ (written by `python -m boxguard.demo.playground_samples`)."""
    index = json.loads((_STATIC / "samples" / "samples.json").read_text(encoding="utf-8"))
    return {s["name"]: SampleScene(s["title"], tuple(s["expressions"])) for s in index}


SAMPLES = _load_samples()


@lru_cache(maxsize=len(SAMPLES))
def sample_png(name: str) -> bytes:
    """The PNG of sample scene `name` (read once per process)."""
    return (_STATIC / "samples" / f"{name}.png").read_bytes()


def playground_config(settings: Settings, policy: Policy) -> dict[str, Any]:
    """What the page needs to know about this server: key requirement, policy defaults, samples.

    Example:
        >>> playground_config(Settings(), Policy())["api_key_required"]
        False
    """
    return {
        "api_key_required": bool(settings.api_keys),
        "policy": {
            "min_confidence": policy.min_confidence,
            "visual_check": policy.visual_check,
            "self_consistency_k": policy.self_consistency_k,
        },
        "max_policy_samples": settings.max_policy_samples,
        "samples": [
            {
                "name": name,
                "title": sample.title,
                "url": f"{ASSET_PREFIX[1:]}samples/{name}.png",  # relative to the page
                "expressions": list(sample.expressions),
            }
            for name, sample in SAMPLES.items()
        ],
    }


@lru_cache(maxsize=len(ASSETS) + 1)
def _static_text(name: str) -> str:
    """One file of the package's static folder."""
    return (_STATIC / name).read_text(encoding="utf-8")


router = APIRouter(include_in_schema=False)


@router.get(PAGE_PATHS[0], response_class=HTMLResponse)
@router.get(PAGE_PATHS[1], response_class=HTMLResponse)
async def playground_page() -> HTMLResponse:
    """The playground page."""
    return HTMLResponse(_static_text("playground.html"), headers=_REVALIDATE)


@router.get(ASSET_PREFIX + "assets/{name}")
async def playground_asset(name: str) -> Response:
    """A stylesheet or script of the page."""
    if name not in ASSETS:
        raise HTTPException(404, f"no playground asset {name!r}")
    return Response(_static_text(name), media_type=ASSETS[name], headers=_REVALIDATE)


@router.get(ASSET_PREFIX + "config")
async def page_config(request: Request) -> JSONResponse:
    """The page's view of this server's settings."""
    # The running service's policy: read once at start-up, not per page load.
    service = request.app.state.service
    config = playground_config(request.app.state.settings, service.policy.values)
    return JSONResponse(config, headers=_REVALIDATE)


@router.get(ASSET_PREFIX + "samples/{name}.png")
async def playground_sample(name: str) -> Response:
    """A bundled sample scene."""
    if name not in SAMPLES:
        raise HTTPException(404, f"no sample scene {name!r}")
    return Response(sample_png(name), media_type="image/png")
