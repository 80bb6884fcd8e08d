"""API errors: every failure leaves fleetd as ``{"error": {"code", "message"}}`` with a fitting status."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "ErrorAnswer",
    "ErrorDetail",
    "Forbidden",
    "NotFound",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "engine_error",
]

from fleetd.dockerapi import (
    DockerError,
    EngineConflict,
    EngineHTTPError,
    EngineNotFound,
    EngineProtocolError,
    EngineTimeout,
    EngineUnreachable,
)


class ErrorDetail(msgspec.Struct):
    """What went wrong. Some errors add fields of their own (``retry_after``, ``limit``, …)."""

    code: str
    message: str
    host: str | None = None


class ErrorAnswer(msgspec.Struct):
    """The body of every error answer (the schema the API description gives for them)."""

    error: ErrorDetail


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        err.update(self.details)
        return {"error": err}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"


class _Status(ApiError):
    def __init__(self, status: int, code: str, message: str, host: str) -> None:
        super().__init__(message, code=code, details={"host": host})
        self.status = status


def engine_error(host: str, exc: DockerError) -> ApiError:
    """Map an Engine failure to the API, keeping its meaning and naming the host."""
    text = f"host {host}: {exc}"
    if isinstance(exc, EngineNotFound):
        return _Status(404, "engine_not_found", text, host)
    if isinstance(exc, EngineConflict):
        return _Status(409, "engine_conflict", text, host)
    if isinstance(exc, EngineHTTPError):
        if 400 <= exc.status < 500:
            return _Status(400 if exc.status != 403 else 403, "engine_rejected", text, host)
        return _Status(502, "engine_error", text, host)
    if isinstance(exc, EngineTimeout):
        return _Status(504, "engine_timeout", text, host)
    if isinstance(exc, EngineUnreachable):
        return _Status(503, "engine_unreachable", text, host)
    if isinstance(exc, EngineProtocolError):
        return _Status(502, "engine_bad_answer", text, host)
    return _Status(502, "engine_error", text, host)
