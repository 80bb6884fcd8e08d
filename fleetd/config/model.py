"""Frozen, typed settings produced by :func:`fleetd.config.load_config`.

Everything downstream (poller, API, store, service) reads these records, never raw YAML.
Durations are float seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fleetd.config.answer_limits import AnswerLimits
from fleetd.config.container_logs import ContainerLogSettings
from fleetd.config.docker_api import DockerAPISettings
from fleetd.config.events import EventsSettings
from fleetd.config.gc import GcSettings
from fleetd.config.listener import ListenerSettings
from fleetd.config.notify import WebhookSettings
from fleetd.config.roles import Role
from fleetd.config.ssh import SSHSettings

__all__ = [
    "AnswerLimits",
    "AuthSettings",
    "HostSettings",
    "ListenTLSSettings",
    "LogSettings",
    "PollSettings",
    "RetentionSettings",
    "Role",
    "SSHSettings",
    "Settings",
    "SnapshotSettings",
    "TLSSettings",
    "TokenSettings",
]



@dataclass(frozen=True, slots=True)
class TLSSettings:
    """Client TLS towards one Docker daemon. Paths were checked readable at load time."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class HostSettings:
    name: str
    url: str  # normalised: tcp://h:p, http://h:p, https://h:p, unix:///path or ssh://[user@]h:p
    labels: Mapping[str, str] = field(default_factory=dict)
    tls: TLSSettings | None = None
    interval: float = 15.0  # effective (per-host override or poll.interval)
    timeout: float = 5.0  # effective (per-host override or poll.timeout)
    enabled: bool = True
    source: str = ""  # "file:line" where the host was declared, for messages
    events: bool = True  # watch this host's /events (when events are enabled at all)
    ssh: SSHSettings | None = None  # set for ssh:// URLs (defaults when the host has no ssh: block)

    def connection_key(self) -> tuple[object, ...]:
        """What, when changed, forces a reconnect on reload."""
        return (self.url, self.tls, self.timeout, self.ssh)


@dataclass(frozen=True, slots=True)
class PollSettings:
    interval: float = 15.0
    timeout: float = 5.0
    connect_timeout: float | None = None  # None: same as timeout
    concurrency: int = 200
    images_every: int = 5  # list /images/json every Nth poll of a host
    jitter: float = 0.1  # fraction of the interval
    max_backoff: float = 300.0  # cap on the failure backoff, seconds
    max_answer: AnswerLimits = field(default_factory=AnswerLimits)  # bytes read per answer
    liveness: float = 15.0  # with events on: /_ping a connected host this often (0: never)


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    last: int = 30000  # keep at most this many scheduled snapshots
    max_age: float = 90 * 86400.0  # seconds
    on_demand: int = 100  # and at most this many on-demand ones, counted apart: they never push out the schedule


@dataclass(frozen=True, slots=True)
class SnapshotSettings:
    enabled: bool = True
    path: Path = Path("fleetd.db")  # resolved: absolute
    interval: float = 300.0
    keep: RetentionSettings = field(default_factory=RetentionSettings)


@dataclass(frozen=True, slots=True)
class TokenSettings:
    name: str
    token_sha256: str  # lowercase hex; from the config or read from token_file at load
    role: Role


@dataclass(frozen=True, slots=True)
class AuthSettings:
    tokens: tuple[TokenSettings, ...] = ()
    anonymous_read: bool = False
    protect_health: bool = False  # /healthz, /readyz, /metrics need a token too


@dataclass(frozen=True, slots=True)
class ListenTLSSettings:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"  # debug | info | warning | error
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True, slots=True)
class Settings:
    path: Path  # the config file (absolute)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    listen_tls: ListenTLSSettings | None = None
    poll: PollSettings = field(default_factory=PollSettings)
    hosts: tuple[HostSettings, ...] = ()
    inventory: Path | None = None
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    log: LogSettings = field(default_factory=LogSettings)
    listener: ListenerSettings = field(default_factory=ListenerSettings)
    shutdown_grace: float = 10.0
    events: EventsSettings = field(default_factory=EventsSettings)
    docker_api: DockerAPISettings | None = None  # the Docker-compatible listener; None: off
    container_logs: ContainerLogSettings = field(default_factory=ContainerLogSettings)
    notify: tuple[WebhookSettings, ...] = ()  # webhooks (fleetd/webhooks/)
    gc: GcSettings = field(default_factory=GcSettings)  # the cyclic collector's pace (service/gcpolicy.py)
