"""Engine API versions (``"1.41"``) as comparable pairs: one reading for the client and the Docker endpoint,
and the client's choice of version against a daemon's (:func:`negotiate_version`)."""

from __future__ import annotations

from fleetd.dockerapi.errors import EngineProtocolError, EngineVersionError

__all__ = [
    "CLIENT_API_VERSION",
    "MIN_API_VERSION",
    "ApiVersion",
    "at_least",
    "format_api_version",
    "negotiate_version",
    "parse_api_version",
]

ApiVersion = tuple[int, int]

#: The newest API version this client speaks; the lower of this and the daemon's is used.
CLIENT_API_VERSION = "1.51"
#: Nothing older than this is spoken at all.
MIN_API_VERSION = "1.24"


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


def negotiate_version(daemon_max: str | None, daemon_min: str | None = None) -> str:
    """The lower of the daemon's maximum and ours, never below the daemon's minimum or 1.24."""
    try:
        ours = parse_api_version(CLIENT_API_VERSION)
        theirs = parse_api_version(daemon_max) if daemon_max else parse_api_version(MIN_API_VERSION)
        floor = max(parse_api_version(MIN_API_VERSION), parse_api_version(daemon_min) if daemon_min else (0, 0))
    except ValueError as exc:
        raise EngineProtocolError(f"unparsable API version {daemon_max!r}/{daemon_min!r}") from exc
    chosen = min(ours, theirs)
    if chosen < floor:
        if theirs < parse_api_version(MIN_API_VERSION):
            raise EngineVersionError(
                f"daemon speaks API {daemon_max}, older than the oldest supported {MIN_API_VERSION}"
            )
        raise EngineVersionError(
            f"daemon requires API ≥ {daemon_min}, this client speaks up to {CLIENT_API_VERSION}"
        )
    return format_api_version(chosen)
