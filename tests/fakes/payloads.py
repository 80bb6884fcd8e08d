"""JSON bodies of /info, /version and /images/search, shaped after real dockerd 20.10 / podman 4.3."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Final

from .behaviour import EngineBehaviour
from .model import EngineState

__all__ = ["SEARCH_CATALOGUE", "info_body", "search_results", "version_body"]

Json = dict[str, Any]

SEARCH_CATALOGUE: Final[tuple[Json, ...]] = (
    {"name": "nginx", "description": "Official build of Nginx.", "star_count": 20000, "official": True},
    {
        "name": "redis",
        "description": "Redis is the world's fastest data platform.",
        "star_count": 13000,
        "official": True,
    },
    {
        "name": "postgres",
        "description": "The PostgreSQL object-relational database system.",
        "star_count": 14000,
        "official": True,
    },
    {"name": "busybox", "description": "Busybox base image.", "star_count": 3400, "official": True},
    {
        "name": "traefik",
        "description": "Traefik, the cloud native edge router.",
        "star_count": 3300,
        "official": True,
    },
    {
        "name": "bitnami/nginx",
        "description": "Bitnami container image for NGINX",
        "star_count": 190,
        "official": False,
    },
    {
        "name": "nginxinc/nginx-unprivileged",
        "description": "Unprivileged NGINX Dockerfiles",
        "star_count": 150,
        "official": False,
    },
    {"name": "fleet/busybox", "description": "fleetd test image", "star_count": 0, "official": False},
)


def info_body(behaviour: EngineBehaviour, state: EngineState) -> Json:
    containers = list(state.containers.values())
    running = sum(c.state in ("running", "restarting") for c in containers)
    paused = sum(c.state == "paused" for c in containers)
    root_dir = "/var/lib/docker" if behaviour.product == "docker" else "/var/lib/containers/storage"
    return {
        "ID": state.engine_id,
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": len(state.images),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "ipvlan", "macvlan", "null", "overlay"],
            "Authorization": None,
            "Log": ["json-file", "journald", "local", "syslog"],
        },
        "MemoryLimit": True,
        "SwapLimit": True,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": True,
        "Debug": False,
        "NFd": 29,
        "OomKillDisable": True,
        "NGoroutines": 46,
        "SystemTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "LoggingDriver": "json-file",
        "CgroupDriver": "systemd",
        "CgroupVersion": "2",
        "NEventsListener": 0,
        "KernelVersion": behaviour.kernel_version,
        "OperatingSystem": behaviour.operating_system,
        "OSVersion": "12",
        "OSType": behaviour.os_type,
        "Architecture": "x86_64",
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": behaviour.ncpu,
        "MemTotal": behaviour.mem_total,
        "GenericResources": None,
        "DockerRootDir": root_dir,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": behaviour.hostname,
        "Labels": [],
        "ExperimentalBuild": behaviour.experimental,
        "ServerVersion": behaviour.server_version,
        "Runtimes": {"runc": {"path": "runc"}},
        "DefaultRuntime": "runc",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        },
        "LiveRestoreEnabled": False,
        "Isolation": "",
        "InitBinary": "docker-init",
        "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"],
        "Warnings": None,
    }


def version_body(behaviour: EngineBehaviour) -> Json:
    if behaviour.product == "podman":
        component: Json = {
            "Name": "Podman Engine",
            "Version": behaviour.server_version,
            "Details": {
                "APIVersion": behaviour.server_version,
                "MinAPIVersion": "4.0.0",
                "Os": behaviour.os_type,
                "Arch": "amd64",
                "Experimental": "false",
            },
        }
    else:
        component = {
            "Name": "Engine",
            "Version": behaviour.server_version,
            "Details": {
                "ApiVersion": behaviour.api_version,
                "MinAPIVersion": behaviour.min_api_version,
                "Os": behaviour.os_type,
                "Arch": "amd64",
                "Experimental": str(behaviour.experimental).lower(),
                "GitCommit": "fake",
                "GoVersion": "go1.22.8",
                "KernelVersion": behaviour.kernel_version,
            },
        }
    return {
        "Platform": {"Name": "Docker Engine - Community" if behaviour.product == "docker" else "linux/amd64"},
        "Components": [component],
        "Version": behaviour.server_version,
        "ApiVersion": behaviour.api_version,
        "MinAPIVersion": behaviour.min_api_version,
        "GitCommit": "fake",
        "GoVersion": "go1.22.8",
        "Os": behaviour.os_type,
        "Arch": "amd64",
        "KernelVersion": behaviour.kernel_version,
        "BuildTime": datetime.fromtimestamp(time.time() - 86_400 * 30, UTC).isoformat(),
    }


def search_results(term: str, limit: int) -> list[Json]:
    hits = [entry for entry in SEARCH_CATALOGUE if term.lower() in str(entry["name"]).lower()]
    hits.sort(key=lambda e: -int(e["star_count"]))
    return [
        {
            "name": e["name"],
            "description": e["description"],
            "star_count": e["star_count"],
            "is_official": e["official"],
            "is_automated": False,
        }
        for e in hits[:limit]
    ]
