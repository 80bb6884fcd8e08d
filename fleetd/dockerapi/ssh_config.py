"""Where and how to reach a daemon over SSH (``ssh://`` hosts): plain settings, no SSH library.

Kept apart from :mod:`fleetd.dockerapi.ssh` (the tunnel, which needs asyncssh) so that a fleet
without ``ssh://`` hosts never imports asyncssh: fleetd starts about a tenth of a second sooner.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_SOCKET", "SSHConfig", "SSHOptions"]

DEFAULT_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True, slots=True)
class SSHOptions:
    """Per-host SSH settings; the address itself comes from the ``ssh://`` URL."""

    user: str | None = None  # used when the URL has none; else the local user, like ssh
    identity: Path | None = None  # None: the agent ($SSH_AUTH_SOCK) and ~/.ssh/id_* keys
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts
    socket: str = DEFAULT_SOCKET
    connect_timeout: float = 10.0  # TCP connect + SSH handshake + authentication
    keepalive_interval: float = 30.0  # 0 disables; 3 unanswered keepalives drop the connection


@dataclass(frozen=True, slots=True)
class SSHConfig:
    """Everything needed to reach one daemon over SSH; equal configs share one connection."""

    host: str
    port: int
    user: str
    options: SSHOptions = field(default_factory=SSHOptions)

    @property
    def socket(self) -> str:
        return self.options.socket

    @property
    def address(self) -> str:
        """``user@host:port`` for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    def known_hosts_path(self) -> Path:
        return self.options.known_hosts or Path.home() / ".ssh" / "known_hosts"

    @classmethod
    def from_url(cls, url: str, options: SSHOptions | None = None) -> SSHConfig:
        """``ssh://[user@]host[:port]`` with *options*; ValueError if it is not one."""
        from urllib.parse import unquote, urlsplit

        opts = options or SSHOptions()
        parts = urlsplit(url)
        if parts.scheme.lower() != "ssh" or not parts.hostname:
            raise ValueError(f"not an ssh://[user@]host[:port] URL: {url!r}")
        if parts.password is not None:
            raise ValueError("passwords are not accepted in an ssh:// URL; fleetd uses keys only")
        if parts.path not in ("", "/"):
            raise ValueError(f"an ssh:// URL takes no path ({parts.path!r}); set ssh.socket instead")
        user = unquote(parts.username) if parts.username else (opts.user or getpass.getuser())
        return cls(host=parts.hostname, port=parts.port or 22, user=user, options=opts)
