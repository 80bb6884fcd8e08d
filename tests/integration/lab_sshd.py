"""A real OpenSSH server owned by a test, on a loopback port, with its own host key and authorized key.

    sshd = Sshd.start(root)                  # ed25519 host key, a client key in authorized_keys
    sshd.url("root")                         # "ssh://root@127.0.0.1:PORT"
    sshd.known_hosts                         # a known_hosts file that trusts exactly this host key
    sshd.accepted_connections()              # "Accepted publickey" lines in its log (sshd logs at DEBUG1)
    sshd.kill(); sshd.restart()              # gone (listener and every session), then back on the same port
    sshd.close()

sshd runs in the foreground (``-D``) and logs to its own file (``-E``); each client connection is a
child process of the listener, so :meth:`kill` ends the listener and every descendant, by pid, to
look like a host that went away. Stream-local forwarding is allowed: that is what fleetd's SSH
transport uses (``direct-streamlocal@openssh.com`` to the remote Docker socket).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.lab_os import LabError, free_port

__all__ = ["SSHD", "Sshd", "sshd_unavailable_reason"]

SSHD = "/usr/sbin/sshd"
READY_TIMEOUT = 15.0


def sshd_unavailable_reason() -> str | None:
    for tool, package in ((SSHD, "openssh-server"), ("ssh-keygen", "openssh-client")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    if os.geteuid() != 0:
        return "the test sshd needs root (privilege separation, logging in as root)"
    return None


def keygen(path: Path, comment: str) -> Path:
    """An unencrypted ed25519 key pair at ``path`` / ``path.pub``; returns ``path``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _descendants(root_pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        parents[int(entry)] = int(fields[1])
    found: list[int] = []
    frontier = {root_pid}
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier}
        found.extend(children)
        frontier = children
    return found


@dataclass(eq=False)
class Sshd:
    root: Path
    port: int
    host_key: Path
    client_key: Path
    known_hosts: Path
    log: Path
    config: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, root: Path, *, tcp_forwarding: str = "local") -> Sshd:
        """``tcp_forwarding``: sshd's AllowTcpForwarding (OpenSSH 9.2 refuses stream-local channels at "no")."""
        root.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        host_key = keygen(root / "host_key", "test sshd host key")
        client_key = keygen(root / "client_key", "fleetd test client")
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        port = free_port()
        known_hosts = root / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {(root / 'host_key.pub').read_text()}")
        config = root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {root / 'authorized_keys'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    "UsePAM no",
                    "AllowStreamLocalForwarding yes",
                    f"AllowTcpForwarding {tcp_forwarding}",
                    "X11Forwarding no",
                    "LogLevel DEBUG1",  # VERBOSE logs logins; DEBUG1 also each stream-local channel
                    f"PidFile {root / 'sshd.pid'}",
                    # A test polls fast and reconnects often; never let sshd throttle it.
                    "MaxStartups 100:30:200",
                    "MaxSessions 100",
                    "",
                ]
            )
        )
        sshd = cls(root, port, host_key, client_key, known_hosts, root / "sshd.log", config)
        sshd.restart()
        return sshd

    def url(self, user: str = "root") -> str:
        return f"ssh://{user}@127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def restart(self) -> None:
        """Start the listener (again) on the same port, with the same keys; waits until it accepts."""
        if self.pid is not None:
            return
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)], stdout=out, stderr=out
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LabError(f"sshd exited with {self._process.returncode}: {self.log_text()[-2000:]}")
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.kill()
        raise LabError(f"sshd did not listen on 127.0.0.1:{self.port} within {READY_TIMEOUT:g}s")

    def kill(self) -> None:
        """End the listener and every session process it forked, by pid (a host that is gone)."""
        process = self._process
        if process is None:
            return
        for pid in [process.pid, *_descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)
        self._process = None

    def session_pids(self) -> list[int]:
        return _descendants(self._process.pid) if self._process is not None else []

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def accepted_connections(self) -> int:
        """How many logins sshd accepted (one per SSH connection), from its VERBOSE log."""
        return sum(1 for line in self.log_text().splitlines() if "Accepted publickey for" in line)

    def close(self) -> None:
        self.kill()
