"""The containers and images a fake Engine holds, generated deterministically from a seed.

Records are mutable (start/stop/remove change them) and render themselves in the Engine API's JSON
shapes; ``Status`` is computed at request time the way dockerd does (``Up 3 hours (healthy)``).
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from .behaviour import EngineBehaviour, version_tuple

__all__ = [
    "STATE_CYCLE",
    "ContainerState",
    "EngineState",
    "FakeContainer",
    "FakeImage",
    "Health",
    "human_duration",
    "make_engine_id",
]

ContainerState = Literal["created", "running", "paused", "restarting", "exited", "dead"]
Health = Literal["healthy", "unhealthy", "starting"]
Json = dict[str, Any]

# (state, health, exit code): the cycle generated containers follow, so a test can count them.
STATE_CYCLE: Final[tuple[tuple[ContainerState, Health | None, int], ...]] = (
    ("running", None, 0),
    ("running", "healthy", 0),
    ("exited", None, 0),
    ("running", None, 0),
    ("running", "unhealthy", 0),
    ("exited", None, 137),
    ("running", "starting", 0),
    ("running", None, 0),
    ("created", None, 0),
    ("running", "healthy", 0),
)

_IMAGES: Final[tuple[tuple[str, tuple[str, ...], dict[str, str]], ...]] = (
    # (reference, command, labels the image carries)
    ("nginx:1.27", ("nginx", "-g", "daemon off;"), {"maintainer": "NGINX Docker Maintainers"}),
    ("redis:7.4", ("docker-entrypoint.sh", "redis-server"), {}),
    ("postgres:16", ("docker-entrypoint.sh", "postgres"), {}),
    ("traefik:v3.1", ("/entrypoint.sh", "traefik"), {"org.opencontainers.image.vendor": "Traefik Labs"}),
    ("fleet/busybox:test", ("sleep", "100000"), {}),
    ("registry.example.internal/shop/api:2.3.1", ("python", "-m", "shop.api"), {"team": "shop"}),
)
_PORTS: Final[dict[str, list[Json]]] = {
    "nginx:1.27": [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
    ],
    "redis:7.4": [{"PrivatePort": 6379, "Type": "tcp"}],
    "postgres:16": [{"PrivatePort": 5432, "Type": "tcp"}],
    "traefik:v3.1": [
        {"IP": "0.0.0.0", "PrivatePort": 443, "PublicPort": 443, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 8082, "PublicPort": 8082, "Type": "tcp"},
    ],
}
_PROJECTS: Final = ("shop", "blog", "ci", "metrics", "auth")
_SERVICES: Final = ("web", "api", "worker", "db", "cache", "proxy")


def _hex64(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def make_engine_id(behaviour: EngineBehaviour, rng: random.Random) -> str:
    """An ``ID`` in the shape the product uses: dockerd < 23 (API < 1.42) derives it from key.json."""
    if behaviour.product == "docker" and version_tuple(behaviour.api_version) < (1, 42):
        raw = base64.b32encode(rng.randbytes(30)).decode()
        return ":".join(raw[i : i + 4] for i in range(0, 48, 4))
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration``, used in ``Status``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _rfc3339(ts: float | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class FakeImage:
    id: str  # sha256:...
    repo_tags: list[str]
    created: int
    size: int
    labels: dict[str, str] = field(default_factory=dict)

    def summary(self, api: tuple[int, int]) -> Json:
        name = self.repo_tags[0].rsplit(":", 1)[0] if self.repo_tags else "<none>"
        out: Json = {
            "Containers": -1,
            "Created": self.created,
            "Id": self.id,
            "Labels": self.labels or None,
            "ParentId": "",
            "RepoDigests": [f"{name}@sha256:{_hex64('digest', self.id)}"],
            "RepoTags": list(self.repo_tags),
            "SharedSize": -1,
            "Size": self.size,
        }
        if api < (1, 44):  # VirtualSize left the API in 1.44
            out["VirtualSize"] = self.size
        return out


@dataclass(slots=True)
class FakeContainer:
    id: str
    name: str  # without the leading "/"
    image: str
    image_id: str
    cmd: list[str]
    created: float
    state: ContainerState
    labels: dict[str, str] = field(default_factory=dict)
    health: Health | None = None
    exit_code: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    network_mode: str = "bridge"
    ports: list[Json] = field(default_factory=list)
    mounts: list[Json] = field(default_factory=list)
    ip_address: str = ""

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")

    def status(self, now: float) -> str:
        """dockerd's ``container.State.String()``."""
        if self.state == "paused":
            return f"Up {human_duration(now - (self.started_at or now))} (Paused)"
        if self.state == "restarting":
            return f"Restarting ({self.exit_code}) {human_duration(now - (self.finished_at or now))} ago"
        if self.state == "running":
            health = {"healthy": " (healthy)", "unhealthy": " (unhealthy)", "starting": " (health: starting)"}
            suffix = health[self.health] if self.health else ""
            return f"Up {human_duration(now - (self.started_at or now))}{suffix}"
        if self.state == "dead":
            return "Dead"
        if self.started_at is None:
            return "Created"
        return f"Exited ({self.exit_code}) {human_duration(now - (self.finished_at or now))} ago"

    def _networks(self) -> Json:
        mode = "bridge" if self.network_mode == "default" else self.network_mode
        return {
            mode: {
                "IPAMConfig": None,
                "Links": None,
                "Aliases": None,
                "NetworkID": _hex64("net", mode),
                "EndpointID": _hex64("ep", self.id) if self.running else "",
                "Gateway": "172.17.0.1" if self.ip_address else "",
                "IPAddress": self.ip_address if self.running else "",
                "IPPrefixLen": 16 if self.ip_address and self.running else 0,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": "",
                "DriverOpts": None,
            }
        }

    def summary(self, now: float, size: bool) -> Json:
        """One element of GET /containers/json."""
        out: Json = {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.image,
            "ImageID": self.image_id,
            "Command": " ".join(self.cmd),
            "Created": int(self.created),
            "Ports": [dict(p) for p in self.ports] if self.running else [],
            "Labels": dict(self.labels),
            "State": self.state,
            "Status": self.status(now),
            "HostConfig": {"NetworkMode": self.network_mode},
            "NetworkSettings": {"Networks": self._networks()},
            "Mounts": [dict(m) for m in self.mounts],
        }
        if size:  # only when the client asked for size=true, which is expensive on a real daemon
            out["SizeRw"] = 12288
            out["SizeRootFs"] = 187_000_000
        return out

    def inspect(self) -> Json:
        """GET /containers/{id}/json, abridged to the fields a fleet manager reads."""
        state: Json = {
            "Status": self.state,
            "Running": self.running,
            "Paused": self.state == "paused",
            "Restarting": self.state == "restarting",
            "OOMKilled": False,
            "Dead": self.state == "dead",
            "Pid": int(self.id[:4], 16) + 1000 if self.running else 0,
            "ExitCode": self.exit_code,
            "Error": "",
            "StartedAt": _rfc3339(self.started_at),
            "FinishedAt": _rfc3339(self.finished_at),
        }
        if self.health is not None:
            state["Health"] = {"Status": self.health, "FailingStreak": 0, "Log": []}
        return {
            "Id": self.id,
            "Created": _rfc3339(self.created),
            "Path": self.cmd[0] if self.cmd else "",
            "Args": self.cmd[1:],
            "State": state,
            "Image": self.image_id,
            "Name": f"/{self.name}",
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": {"NetworkMode": self.network_mode, "RestartPolicy": {"Name": "no"}},
            "Mounts": [dict(m) for m in self.mounts],
            "Config": {
                "Hostname": self.id[:12],
                "Image": self.image,
                "Cmd": list(self.cmd),
                "Labels": dict(self.labels),
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            },
            "NetworkSettings": {"Networks": self._networks()},
        }


@dataclass(slots=True)
class EngineState:
    """Containers and images of one engine; ``lookup`` resolves ids, id prefixes and names."""

    engine_id: str
    containers: dict[str, FakeContainer] = field(default_factory=dict)  # by id, in creation order
    images: dict[str, FakeImage] = field(default_factory=dict)  # by reference "name:tag"

    @classmethod
    def generate(cls, behaviour: EngineBehaviour, now: float | None = None) -> EngineState:
        now = time.time() if now is None else now
        rng = random.Random(behaviour.seed)
        engine_id = behaviour.engine_id or make_engine_id(behaviour, rng)
        state = cls(engine_id=engine_id)
        for ref, _cmd, labels in _IMAGES:
            state.add_image(ref, created=int(now - rng.randint(86_400, 200 * 86_400)), labels=labels)
        for i in range(behaviour.containers):
            ref, cmd, _labels = _IMAGES[rng.randrange(len(_IMAGES))]
            project, service = rng.choice(_PROJECTS), rng.choice(_SERVICES)
            kind, health, code = STATE_CYCLE[i % len(STATE_CYCLE)]
            created = now - rng.randint(600, 90 * 86_400)
            started = None if kind == "created" else rng.uniform(created, now - 5)
            finished = rng.uniform(started, now - 1) if kind == "exited" and started is not None else None
            network = "none" if ref == "fleet/busybox:test" else rng.choice(("bridge", "bridge", "host"))
            container = FakeContainer(
                id=_hex64(behaviour.seed, i),
                name=f"{project}-{service}-{i}",
                image=ref,
                image_id=state.images[ref].id,
                cmd=list(cmd),
                created=created,
                state=kind,
                labels={
                    "com.docker.compose.project": project,
                    "com.docker.compose.service": service,
                    "app": service,
                },
                health=health,
                exit_code=code,
                started_at=started,
                finished_at=finished,
                network_mode=network,
                ports=list(_PORTS.get(ref, [])) if network == "bridge" else [],
                mounts=(
                    [
                        {
                            "Type": "volume",
                            "Name": f"{project}_{service}_data",
                            "Source": f"/var/lib/docker/volumes/{project}_{service}_data/_data",
                            "Destination": "/data",
                            "Driver": "local",
                            "Mode": "z",
                            "RW": True,
                            "Propagation": "",
                        }
                    ]
                    if service in ("db", "cache")
                    else []
                ),
                ip_address=f"172.17.{i // 250}.{i % 250 + 2}" if network == "bridge" else "",
            )
            state.containers[container.id] = container
        return state

    def add_image(
        self, ref: str, created: int | None = None, labels: dict[str, str] | None = None
    ) -> FakeImage:
        if ":" not in ref.rsplit("/", 1)[-1]:
            ref += ":latest"
        image = FakeImage(
            id=f"sha256:{_hex64('image', ref)}",
            repo_tags=[ref],
            created=int(time.time()) if created is None else created,
            size=int(_hex64("size", ref)[:6], 16) * 64,
            labels=dict(labels or {}),
        )
        self.images[ref] = image
        return image

    def find_image(self, ref: str) -> FakeImage | None:
        if ref in self.images:
            return self.images[ref]
        if f"{ref}:latest" in self.images:
            return self.images[f"{ref}:latest"]
        return next((img for img in self.images.values() if img.id in (ref, f"sha256:{ref}")), None)

    def lookup(self, ref: str) -> FakeContainer | None:
        """By full id, by name (with or without "/"), then by unique id prefix, like dockerd."""
        if ref in self.containers:
            return self.containers[ref]
        name = ref.removeprefix("/")
        for c in self.containers.values():
            if c.name == name:
                return c
        matches = [c for c in self.containers.values() if c.id.startswith(ref)] if ref else []
        return matches[0] if len(matches) == 1 else None

    def create(self, name: str, image: FakeImage, ref: str, body: Json, now: float) -> FakeContainer:
        cmd = body.get("Cmd") or ["sh"]
        host_config = body.get("HostConfig") or {}
        container = FakeContainer(
            id=_hex64(self.engine_id, name, now, len(self.containers)),
            name=name,
            image=ref,
            image_id=image.id,
            cmd=[str(c) for c in cmd] if isinstance(cmd, list) else [str(cmd)],
            created=now,
            state="created",
            labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
            network_mode=str(host_config.get("NetworkMode") or "default"),
        )
        self.containers[container.id] = container
        return container
