"""What the lab needs from the machine: tool checks, free loopback ports, process and mount lookups."""

from __future__ import annotations

import http.client
import os
import random
import shutil
import socket
import threading
from pathlib import Path

__all__ = [
    "PORT_RANGE",
    "LabError",
    "UnixHTTPConnection",
    "docker_unavailable_reason",
    "free_port",
    "mountpoints_under",
    "processes_mentioning",
]

PORT_RANGE = (23000, 29999)  # below the ephemeral range (32768-60999)


class LabError(RuntimeError):
    """A daemon of the lab could not be started, driven or cleaned up."""


def docker_unavailable_reason() -> str | None:
    for tool in ("dockerd", "docker", "busybox", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (apt-get install docker.io busybox-static openssl)"
    if os.geteuid() != 0:
        return "dockerd needs root"
    return None


_ports_taken: set[int] = set()
_ports_lock = threading.Lock()


def free_port(rng: random.Random | None = None) -> int:
    """A loopback port in PORT_RANGE that can be bound right now and was not handed out before."""
    rng = rng or random.Random()
    with _ports_lock:
        for _ in range(500):
            port = rng.randint(*PORT_RANGE)
            if port in _ports_taken:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ports_taken.add(port)
            return port
    raise LabError(f"no free port in {PORT_RANGE}")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def mountpoints_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root)
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")  # \040 and friends
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def processes_mentioning(text: str) -> set[int]:
    """Pids whose command line contains ``text`` (a unique lab path), plus all their descendants."""
    needle, me = text.encode(), os.getpid()
    parents: dict[int, int] = {}
    hits: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle in f.read():
                    hits.add(pid)
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                hits.discard(pid)  # zombies need no killing
                continue
            parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    found, grew = set(hits), True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found
