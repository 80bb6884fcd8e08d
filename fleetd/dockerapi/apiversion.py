"""Engine API versions (``"1.41"``) as comparable pairs: one reading for the client and the Docker endpoint."""

from __future__ import annotations

__all__ = ["ApiVersion", "at_least", "format_api_version", "parse_api_version"]

ApiVersion = tuple[int, int]


def parse_api_version(text: str) -> ApiVersion:
    """``"1.41"`` → ``(1, 41)``, ``"2"`` → ``(2, 0)``; raises ValueError for anything else."""
    major, _, minor = text.strip().partition(".")
    return int(major), int(minor or 0)


def format_api_version(v: ApiVersion) -> str:
    return f"{v[0]}.{v[1]}"


def at_least(version: str | None, major: int, minor: int) -> bool:
    """The negotiated ``version`` is ``major.minor`` or newer (False when unknown)."""
    if not version:
        return False
    try:
        return parse_api_version(version) >= (major, minor)
    except ValueError:
        return False
