"""Errors in the Engine's own shape: ``{"message": ...}`` with ``Content-Type: application/json``.

The docker CLI parses the message only when the content type is exactly ``application/json``
(aiohttp's ``json_response`` adds ``; charset=utf-8``), so every error goes through :func:`error_response`.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

__all__ = ["DockerAPIError", "error_response", "not_supported"]


class DockerAPIError(Exception):
    """An answer other than success; ``message`` is what the docker CLI prints after ``Error:``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def not_supported(what: str) -> DockerAPIError:
    # "not supported" lets `docker inspect` move on to the next object kind (isErrSkippable).
    return DockerAPIError(501, f"{what} is not supported by fleetd")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    resp = web.Response(
        status=status, body=msgspec.json.encode({"message": message}) + b"\n", headers=headers
    )
    resp.headers["Content-Type"] = "application/json"
    return resp
