"""API versions: what fleetd advertises, and what each host is asked in its own window.

Clients negotiate against fleetd like against a daemon (``HEAD /_ping``'s ``Api-Version``, or
docker-py's ``GET /version``). Each host then gets the client's version clamped into that host's
window [MinAPIVersion, ApiVersion] from its own ``/version``: a Docker 29.0 host refuses anything
below 1.44, a 20.10 host anything above 1.41, and a mixed fleet must work with both.
"""

from __future__ import annotations

import re

from fleetd.dockerapi.apiversion import format_api_version, parse_api_version

__all__ = [
    "FLEETD_MAX_API",
    "FLEETD_MIN_API",
    "VERSION_PREFIX",
    "Window",
    "advertised_version",
    "clamp",
    "too_new",
]

FLEETD_MAX_API = "1.51"
FLEETD_MIN_API = "1.24"
#: Never advertise less: docker CLI 29 refuses a server below 1.40.
ADVERTISE_FLOOR = "1.40"
VERSION_PREFIX = re.compile(r"^/v(\d{1,3}\.\d{1,3})(/.*)$")



class Window:
    """The API versions one host accepts."""

    __slots__ = ("high", "low")

    def __init__(self, low: str, high: str) -> None:
        self.low = parse_api_version(low or FLEETD_MIN_API)
        self.high = parse_api_version(high or FLEETD_MAX_API)

    def __repr__(self) -> str:
        return f"Window({format_api_version(self.low)}..{format_api_version(self.high)})"


def clamp(client: str, window: Window) -> str:
    """The client's version moved into the host's window."""
    v = parse_api_version(client)
    return format_api_version(max(window.low, min(v, window.high)))


def advertised_version(host_maxima: list[str]) -> str:
    """The lowest maximum of the up hosts, capped by fleetd's own and never below the floor."""
    best = parse_api_version(FLEETD_MAX_API)
    for text in host_maxima:
        try:
            best = min(best, parse_api_version(text))
        except ValueError:
            continue
    return format_api_version(max(best, parse_api_version(ADVERTISE_FLOOR)))


def too_new(client: str, advertised: str) -> str | None:
    """moby's refusal of a version above the server's, or None."""
    if parse_api_version(client) > parse_api_version(advertised):
        return f"client version {client} is too new. Maximum supported API version is {advertised}"
    if parse_api_version(client) < parse_api_version(FLEETD_MIN_API):
        return f"client version {client} is too old. Minimum supported API version is {FLEETD_MIN_API}, please upgrade your client to a newer version"
    return None
