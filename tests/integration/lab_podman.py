"""podman's Docker-compatible API service as a lab daemon: its command line, config files and checks.

Everything lives under the daemon's root (storage, run root, tmp, storage.conf, containers.conf), so
several podman services, or a podman and the machine's own, never share state.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.integration.lab_os import docker_unavailable_reason

__all__ = [
    "podman_environment",
    "podman_global_options",
    "podman_service_command",
    "podman_unavailable_reason",
]


def podman_unavailable_reason() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not on PATH (apt-get install podman)"
    return docker_unavailable_reason()


def podman_global_options(root: Path) -> list[str]:
    """``podman`` and the options that point it at the storage below ``root``."""
    return [
        "podman", "--root", str(root / "storage"), "--runroot", str(root / "run"),
        "--storage-driver", "overlay", "--tmpdir", str(root / "tmp"),
        "--cgroup-manager", "cgroupfs", "--events-backend", "file",
    ]  # fmt: skip


def podman_service_command(root: Path, port: int) -> list[str]:
    return [*podman_global_options(root), "system", "service", "--time=0", f"tcp:127.0.0.1:{port}"]


def podman_environment(root: Path) -> dict[str, str]:
    """Write the config files below ``root``; returns the environment that makes podman read them."""
    for sub in ("storage", "run", "tmp"):
        (root / sub).mkdir(exist_ok=True)
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/storage"\nrunroot = "{root}/run"\n'
    )
    # Without CAP_SYS_RESOURCE runc cannot raise RLIMIT_NOFILE/NPROC to podman's root defaults.
    (root / "containers.conf").write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
        '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        # A small event log, so that tests see podman rotate it (and end streams opened with since).
        'events_logfile_max_size = "4k"\n'
    )
    return {
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "CONTAINERS_CONF": str(root / "containers.conf"),
    }
