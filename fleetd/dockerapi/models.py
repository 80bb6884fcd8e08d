"""Typed records decoded from Engine API answers, once, at the boundary.

Only the fields fleetd uses are declared; unknown fields are ignored, so newer daemons and
podman's compatible API decode as well. A field of the wrong type is a wrong shape and
raises :class:`~fleetd.dockerapi.errors.EngineProtocolError` in the client.

The records decoded on every poll are ``gc=False`` with tuples for arrays: decoded JSON cannot
form reference cycles, and untracked objects keep the cyclic garbage collector's work small.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "ContainerHealth",
    "ContainerInspect",
    "ContainerSummary",
    "CreateResult",
    "ImageSearchResult",
    "ImageSummary",
    "PingResult",
    "Port",
    "SystemInfo",
    "VersionInfo",
    "is_podman_server",
]


class PingResult(msgspec.Struct, frozen=True):
    api_version: str | None
    os_type: str | None
    server: str | None
    experimental: bool

    @property
    def is_podman(self) -> bool:
        """podman's compatible service (``Server: Libpod/...``)."""
        return is_podman_server(self.server)


def is_podman_server(server: str | None) -> bool:
    """The one rule for telling podman by its ``Server`` header (the client, the event watchers)."""
    return (server or "").lower().startswith("libpod/")


class VersionInfo(msgspec.Struct, frozen=True, rename="pascal"):
    version: str = ""
    api_version: str = msgspec.field(default="", name="ApiVersion")
    min_api_version: str = msgspec.field(default="", name="MinAPIVersion")
    os: str = msgspec.field(default="", name="Os")
    arch: str = ""
    kernel_version: str = ""


class SystemInfo(msgspec.Struct, frozen=True, gc=False):
    ID: str = ""
    Name: str = ""
    ServerVersion: str = ""
    OperatingSystem: str = ""
    OSType: str = ""
    KernelVersion: str = ""
    Architecture: str = ""
    NCPU: int = 0
    MemTotal: int = 0
    Driver: str = ""
    Containers: int = 0
    ContainersRunning: int = 0
    Images: int = 0


class Port(msgspec.Struct, frozen=True, gc=False):
    PrivatePort: int = 0
    Type: str = "tcp"
    IP: str | None = None
    PublicPort: int | None = None


class ContainerHealth(msgspec.Struct, frozen=True, gc=False):
    Status: str = ""
    FailingStreak: int = 0


class ContainerSummary(msgspec.Struct, frozen=True, gc=False):
    Id: str
    Names: tuple[str, ...] | None = None
    Image: str = ""
    ImageID: str = ""
    Command: str = ""
    Created: int = 0
    State: str = ""
    Status: str = ""
    Ports: tuple[Port, ...] | None = None
    Labels: dict[str, str] | None = None
    Health: ContainerHealth | None = None


class ImageSummary(msgspec.Struct, frozen=True, gc=False):
    Id: str
    RepoTags: tuple[str, ...] | None = None
    RepoDigests: tuple[str, ...] | None = None
    Created: int = 0
    Size: int = 0
    Labels: dict[str, str] | None = None


class ContainerState(msgspec.Struct, frozen=True):
    Status: str = ""
    Running: bool = False
    ExitCode: int = 0
    StartedAt: str = ""
    FinishedAt: str = ""
    Health: ContainerHealth | None = None


class ContainerConfig(msgspec.Struct, frozen=True):
    Tty: bool = False
    Image: str = ""


class ContainerInspect(msgspec.Struct, frozen=True):
    Id: str
    Name: str = ""
    Created: str = ""
    Image: str = ""
    State: ContainerState | None = None
    Config: ContainerConfig | None = None


class CreateResult(msgspec.Struct, frozen=True):
    Id: str
    Warnings: list[str] | None = None


class ImageSearchResult(msgspec.Struct, frozen=True):
    name: str
    description: str = ""
    star_count: int = 0
    is_official: bool = False
    is_automated: bool = False
