"""What can go wrong on the client side, as sentences for a person and an exit status.

CtlError               the command cannot do what was asked (exit 1 unless said otherwise)
├── Unreachable        no answer from fleetd at all (not running, wrong address, TLS)
└── ApiFailure         fleetd answered with an error: status, code and its message
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiFailure", "CtlError", "Unreachable"]


class CtlError(Exception):
    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Unreachable(CtlError):
    pass


class ApiFailure(CtlError):
    def __init__(self, message: str, *, status: int, code: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body or {}
