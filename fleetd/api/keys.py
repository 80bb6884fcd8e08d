"""The application's one shared object: the running fleet (typed key, no globals)."""

from __future__ import annotations

from aiohttp import web

from fleetd.runtime import Fleet

__all__ = ["FLEET"]

FLEET = web.AppKey("fleet", Fleet)
