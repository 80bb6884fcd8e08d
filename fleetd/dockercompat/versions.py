"""API versions: what fleetd advertises, and what each host is asked in its own window.

Clients negotiate against fleetd like against a daemon (``HEAD /_ping``'s ``Api-Version``, or
docker-py's ``GET /version``). Each host then gets the client's version clamped into that host's
window [MinAPIVersion, ApiVersion] from its own ``/version``: a Docker 29.0 host refuses anything
below 1.44, a 20.10 host anything above 1.41, and a mixed fleet must work with both.
"""

from __future__ import annotations

import re

from fleetd.dockerapi.apiversion import ApiVersion, format_api_version, parse_api_version

__all__ = [
    "FLEETD_MAX_API",
    "FLEETD_MIN_API",
    "VERSION_PREFIX",
    "Window",
    "advertised_version",
    "clamp",
    "parse_version",
    "too_new",
]

FLEETD_MAX_API = "1.51"
FLEETD_MIN_API = "1.24"
#: Never advertise less: docker CLI 29 refuses a server below 1.40.
ADVERTISE_FLOOR = "1.40"
VERSION_PREFIX = re.compile(r"^/v(\d{1,3}\.\d{1,3})(/.*)$")

Version = ApiVersion
parse_version = parse_api_version
_fmt = format_api_version


class Window:
    """The API versions one host accepts."""

    __slots__ = ("high", "low")

    def __init__(self, low: str, high: str) -> None:
        self.low = parse_version(low or FLEETD_MIN_API)
        self.high = parse_version(high or FLEETD_MAX_API)

    def __repr__(self) -> str:
        return f"Window({_fmt(self.low)}..{_fmt(self.high)})"


def clamp(client: str, window: Window) -> str:
    """The client's version moved into the host's window."""
    v = parse_version(client)
    return _fmt(max(window.low, min(v, window.high)))


def advertised_version(host_maxima: list[str]) -> str:
    """The lowest maximum of the up hosts, capped by fleetd's own and never below the floor."""
    best = parse_version(FLEETD_MAX_API)
    for text in host_maxima:
        try:
            best = min(best, parse_version(text))
        except ValueError:
            continue
    return _fmt(max(best, parse_version(ADVERTISE_FLOOR)))


def too_new(client: str, advertised: str) -> str | None:
    """moby's refusal of a version above the server's, or None."""
    if parse_version(client) > parse_version(advertised):
        return f"client version {client} is too new. Maximum supported API version is {advertised}"
    if parse_version(client) < parse_version(FLEETD_MIN_API):
        return f"client version {client} is too old. Minimum supported API version is {FLEETD_MIN_API}, please upgrade your client to a newer version"
    return None
