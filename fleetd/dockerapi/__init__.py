"""An aiodocker-style async client for the Docker Engine API (no fleet knowledge in here)."""

from __future__ import annotations

from fleetd.dockerapi.client import (
    CLIENT_API_VERSION,
    MIN_API_VERSION,
    DockerClient,
    Timeouts,
    negotiate_version,
)
from fleetd.dockerapi.connections import (
    Endpoint,
    EngineConnections,
    TLSConfig,
    make_ssl_context,
    parse_endpoint,
)
from fleetd.dockerapi.errors import (
    DockerError,
    EngineConflict,
    EngineHTTPError,
    EngineLimitExceeded,
    EngineNotFound,
    EngineProtocolError,
    EngineSSHError,
    EngineTimeout,
    EngineTLSError,
    EngineUnreachable,
    EngineVersionError,
)
from fleetd.dockerapi.limits import ReadLimits
from fleetd.dockerapi.models import (
    ContainerHealth,
    ContainerInspect,
    ContainerSummary,
    CreateResult,
    ImageSearchResult,
    ImageSummary,
    PingResult,
    Port,
    SystemInfo,
    VersionInfo,
)
from fleetd.dockerapi.ssh_config import SSHConfig, SSHOptions
from fleetd.dockerapi.stream import LogLine, ProgressEvent

__all__ = [
    "CLIENT_API_VERSION",
    "MIN_API_VERSION",
    "ContainerHealth",
    "ContainerInspect",
    "ContainerSummary",
    "CreateResult",
    "DockerClient",
    "DockerError",
    "Endpoint",
    "EngineConflict",
    "EngineConnections",
    "EngineHTTPError",
    "EngineLimitExceeded",
    "EngineNotFound",
    "EngineProtocolError",
    "EngineSSHError",
    "EngineTLSError",
    "EngineTimeout",
    "EngineUnreachable",
    "EngineVersionError",
    "ImageSearchResult",
    "ImageSummary",
    "LogLine",
    "PingResult",
    "Port",
    "ProgressEvent",
    "ReadLimits",
    "SSHConfig",
    "SSHOptions",
    "SystemInfo",
    "TLSConfig",
    "Timeouts",
    "VersionInfo",
    "make_ssl_context",
    "negotiate_version",
    "parse_endpoint",
]
