"""JSON answers with exactly ``Content-Type: application/json``, as the Engine sends them."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

__all__ = ["json_ok"]


def json_ok(doc: Any, status: int = 200) -> web.Response:
    resp = web.Response(status=status, body=msgspec.json.encode(doc) + b"\n")
    resp.headers["Content-Type"] = "application/json"
    return resp
