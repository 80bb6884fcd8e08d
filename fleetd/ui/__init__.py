"""The web dashboard's static files (HTML, CSS, JavaScript modules), shipped as package data.

Nothing is built: the files under ``static/`` are what the browser gets. :func:`load_assets` reads them
all once (they are small) so serving never touches the disk.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

__all__ = ["Asset", "load_assets"]

_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True, slots=True)
class Asset:
    name: str  # path below static/, "/"-separated, e.g. "js/app.js"
    body: bytes
    content_type: str
    etag: str  # a strong validator: the content's hash


def _walk(node: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for child in node.iterdir():
        name = f"{prefix}{child.name}"
        if child.is_dir():
            out += _walk(child, name + "/")
        elif not child.name.startswith("."):
            out.append((name, child))
    return out


def load_assets() -> dict[str, Asset]:
    """Every file under static/, by name. Blocking: call it in a thread."""
    root = resources.files(__name__) / "static"
    assets: dict[str, Asset] = {}
    for name, node in _walk(root, ""):
        body = node.read_bytes()
        suffix = name[name.rfind(".") :] if "." in name else ""
        ctype = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[name] = Asset(name, body, ctype, etag)
    return assets
