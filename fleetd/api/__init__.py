"""fleetd's REST API (aiohttp)."""

from __future__ import annotations

from fleetd.api.app import create_app

__all__ = ["create_app"]
