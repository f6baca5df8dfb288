"""API docs pages (/docs Swagger UI, /redoc ReDoc) whose assets the server itself serves.

FastAPI's own pages load their JavaScript from a CDN, so they are blank on an air-gapped network,
where model servers often live. The assets come from the `fastapi-offline` package (in the
`server` extra); no page the server returns names an external URL.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
# Swagger UI would otherwise ask validator.swagger.io to validate the spec for a badge.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets from the package on an app built without them.

    Example:
        >>> app = FastAPI(docs_url=None, redoc_url=None)
        >>> install_docs(app)
        >>> sorted(r.path for r in app.routes if r.path.startswith(("/docs", "/redoc")))
        ['/docs', '/docs-assets', '/docs/oauth2-redirect', '/redoc']
    """
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(assets)), name="docs-assets")
    redirect_path = "/docs/oauth2-redirect"

    def asset(request: Request, name: str) -> str:
        """The asset's path under the app's root path (behind a prefixing proxy too)."""
        return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"

    def openapi_url(request: Request) -> str:
        """The OpenAPI document's path under the app's root path."""
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            oauth2_redirect_url=redirect_path,
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @app.get(redirect_path, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )
