"""The web dashboard: ``/`` and ``/ui/...`` serve the static page, ``/ui/assets/{name}`` its files.

Every answer carries a strict Content-Security-Policy: scripts, styles and connections only from
fleetd itself, no inline script or style, no frames, and Trusted Types required, so the browser
itself refuses any HTML-string sink (``innerHTML``) the page might reach by mistake. The shell
holds no fleet data; the page reads the API with the token the user signs in with.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from fleetd.api.errors import NotFound
from fleetd.api.routes import PUBLIC, RouteTable
from fleetd.ui import Asset, load_assets

__all__ = ["CSP", "UI_ASSETS", "install", "routes"]

routes = RouteTable()

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidate every time: the ETag makes that a 304
}

UI_ASSETS: web.AppKey[dict[str, Asset]] = web.AppKey("ui_assets")


def _serve(request: web.Request, asset: Asset) -> web.Response:
    headers = {**_HEADERS, "ETag": asset.etag}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)


@routes.get("/", PUBLIC, "ui", "The web dashboard", "dashboard", shell=True)
async def index(request: web.Request) -> web.Response:
    return _serve(request, request.app[UI_ASSETS]["index.html"])


@routes.get("/ui/assets/{name:.+}", PUBLIC, "ui", "The dashboard's files (HTML, CSS, JavaScript)", "dashboard", errors=(404,), shell=True)
async def asset(request: web.Request) -> web.Response:
    found = request.app[UI_ASSETS].get(request.match_info["name"])
    if found is None:
        raise NotFound(f"no dashboard file {request.match_info['name']!r}", code="not_found")
    return _serve(request, found)


@routes.get("/ui/{view:.*}", PUBLIC, "ui", "A dashboard location (the page routes itself)", "dashboard", errors=(404,), shell=True)
async def view(request: web.Request) -> web.Response:
    """Any dashboard location (/ui/containers?state=running, /ui/hosts/d1): the page routes itself."""
    return _serve(request, request.app[UI_ASSETS]["index.html"])


async def _load(app: web.Application) -> None:
    app[UI_ASSETS] = await asyncio.to_thread(load_assets)


def install(app: web.Application) -> None:
    app.on_startup.append(_load)
