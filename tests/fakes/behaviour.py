"""What a fake Engine claims to be and how it misbehaves; tests may change it while it runs.

For example::

    behaviour = docker_29(containers=12)
    behaviour.faults["containers"] = Fault.HANG      # only GET /containers/json hangs
    behaviour.faults["*"] = Fault.STATUS_500         # every endpoint answers 500
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, get_args

__all__ = [
    "ENDPOINTS",
    "FOLLOW_API_VERSION",
    "Endpoint",
    "EngineBehaviour",
    "Fault",
    "docker_20_10",
    "docker_29",
    "podman",
    "version_tuple",
]

#: Endpoint names used as keys of :attr:`EngineBehaviour.faults`; ``"*"`` matches every endpoint.
Endpoint = Literal[
    "*",
    "ping",
    "version",
    "info",
    "containers",
    "inspect",
    "create",
    "start",
    "stop",
    "restart",
    "kill",
    "remove",
    "images",
    "search",
    "pull",
    "events",
]
ENDPOINTS: Final[tuple[Endpoint, ...]] = get_args(Endpoint)


class Fault(enum.StrEnum):
    HANG = "hang"  # never answers until the engine closes
    STATUS_500 = "status_500"  # {"message": ...} with status 500
    INVALID_JSON = "invalid_json"  # 200, application/json, truncated body
    WRONG_SHAPE = "wrong_shape"  # an object where a list belongs and vice versa
    CLOSE_CONNECTION = "close_connection"  # drops the TCP connection without a status line
    SLOW = "slow"  # the normal answer, after EngineBehaviour.slow_seconds
    # Hostile answers (tests/fakes/hostile.py); sizes from EngineBehaviour.hostile_bytes.
    HUGE = "huge"  # a JSON list of hostile_bytes, announced with Content-Length
    ENDLESS = "endless"  # a chunked JSON list that never ends
    GZIP_BOMB = "gzip_bomb"  # Content-Encoding: gzip, inflating to hostile_bytes
    DEEP_JSON = "deep_json"  # JSON nested 100,000 deep
    REDIRECT = "redirect"  # 301 with a Location and a JSON body
    HTML_PAGE = "html_page"  # 200 text/html (a web server on the wrong port)
    NO_CONTENT = "no_content"  # 204, no body
    NOT_MODIFIED = "not_modified"  # 304, no body
    FOUND_EMPTY = "found_empty"  # 302, no body, no Location
    HUGE_HEADER = "huge_header"  # a 100 KB response header
    RESET_MID_BODY = "reset_mid_body"  # half the announced body, then a TCP reset


class _Follow(enum.Enum):
    API_VERSION = "follow-api-version"


#: Default of :attr:`EngineBehaviour.ping_api_version_header`: the header carries ``api_version``.
FOLLOW_API_VERSION: Final = _Follow.API_VERSION


def version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or "0")


@dataclass(slots=True)
class EngineBehaviour:
    """Identity, size and faults of one fake Engine. Read on every request, so mutable at runtime."""

    api_version: str = "1.47"
    min_api_version: str = "1.24"
    #: ``Api-Version`` header on every answer: None leaves it out, a string overrides it.
    ping_api_version_header: str | Literal[_Follow.API_VERSION] | None = FOLLOW_API_VERSION
    #: ``ID`` in /info; None: a random UUID chosen when the engine is created.
    engine_id: str | None = None
    server_version: str = "27.5.1"
    #: ``Server`` header; None: ``Docker/{server_version} (linux)``.
    server_header: str | None = None
    product: Literal["docker", "podman"] = "docker"
    hostname: str = "fake-host"
    os_type: str = "linux"
    kernel_version: str = "6.1.0-28-amd64"
    operating_system: str = "Debian GNU/Linux 12 (bookworm)"
    ncpu: int = 4
    mem_total: int = 8 * 1024**3
    experimental: bool = False
    #: Number of generated containers and the seed that makes them reproducible.
    containers: int = 40
    seed: int = 0
    #: Seconds added before every answer.
    latency: float = 0.0
    faults: dict[Endpoint, Fault] = field(default_factory=dict)
    #: How long a Fault.SLOW endpoint waits before answering.
    slow_seconds: float = 5.0
    #: Size of the HUGE list and of what a GZIP_BOMB inflates to, in bytes.
    hostile_bytes: int = 200 * 1024 * 1024
    #: ``Set-Cookie`` sent with every answer (None: none); requests' Cookie headers are recorded.
    set_cookie: str | None = None
    #: Image references (``name:tag``) that POST /images/create refuses with 404.
    unpullable: set[str] = field(default_factory=set)
    #: podman only: rotate the event log at this many entries (``events_logfile_max_size``).
    events_rotate_at: int | None = None

    def fault_for(self, endpoint: Endpoint) -> Fault | None:
        return self.faults.get(endpoint, self.faults.get("*"))

    def api_version_header(self) -> str | None:
        if self.ping_api_version_header is FOLLOW_API_VERSION:
            return self.api_version
        return self.ping_api_version_header

    def server_header_value(self) -> str:
        return self.server_header or f"Docker/{self.server_version} (linux)"


def docker_20_10(**overrides: Any) -> EngineBehaviour:
    """Debian 12's docker.io: API 1.41, accepts down to 1.12, engine IDs like ``ABCD:EFGH:...``."""
    base = EngineBehaviour(api_version="1.41", min_api_version="1.12", server_version="20.10.24+dfsg1")
    return replace(base, **overrides)


def docker_29(**overrides: Any) -> EngineBehaviour:
    """Docker 29: API 1.52 and refuses anything older than 1.44 with 400."""
    base = EngineBehaviour(api_version="1.52", min_api_version="1.44", server_version="29.0.2")
    return replace(base, **overrides)


def podman(**overrides: Any) -> EngineBehaviour:
    """Podman 4.3's Docker-compatible service: API 1.41, ``Server: Libpod/4.3.1 (linux)``."""
    base = EngineBehaviour(
        api_version="1.41",
        min_api_version="1.24",
        server_version="4.3.1",
        server_header="Libpod/4.3.1 (linux)",
        product="podman",
        experimental=True,
    )
    return replace(base, **overrides)
