"""A host's ``ssh:`` block, for ``url: ssh://[user@]host[:port]``.

    - name: web3
      url: ssh://deploy@web3.example.internal
      ssh:
        identity: /etc/fleetd/ssh/id_ed25519      # default: the ssh-agent, then ~/.ssh/id_*
        known_hosts: /etc/fleetd/ssh/known_hosts  # default: ~/.ssh/known_hosts
        socket: /var/run/docker.sock              # the default
        connect_timeout: 10s
        keepalive_interval: 30s                   # 0 turns SSH keepalives off

Files are checked here, never prompting: the identity must be a private key that opens without
a passphrase (a protected key belongs in an ssh-agent), known_hosts must parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fleetd.config.fields import Section, readable_problem

__all__ = ["SSH_KEYS", "SSHSettings", "read_ssh"]

SSH_KEYS = ("user", "identity", "known_hosts", "socket", "connect_timeout", "keepalive_interval")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}")


@dataclass(frozen=True, slots=True)
class SSHSettings:
    """How to reach one daemon over SSH. Paths were checked readable (and the key usable) at load."""

    user: str | None = None  # the URL's user wins; neither: the local user
    identity: Path | None = None
    known_hosts: Path | None = None
    socket: str = "/var/run/docker.sock"
    connect_timeout: float = 10.0
    keepalive_interval: float = 30.0


def _url_user(url: str) -> str | None:
    netloc = url.split("://", 1)[1]
    return netloc.rpartition("@")[0] or None if "@" in netloc else None


def read_ssh(host: Section, base: Path, url: str | None, scheme: str | None) -> SSHSettings | None:
    """The ``ssh:`` block of a host (defaults for an ssh:// URL without one); None for other schemes."""
    if scheme is not None and scheme != "ssh":
        if host.has("ssh"):
            host.problem("ssh", f"ssh: settings apply only to ssh:// URLs, not {scheme}://")
        return None
    sec = host.section("ssh", SSH_KEYS) if host.has("ssh") else None
    if sec is None:
        settings = SSHSettings()
        if scheme == "ssh":
            _check_default_known_hosts(host, "url")
        return settings
    default = SSHSettings()
    user = sec.text("user")
    if user is not None and not _USER.fullmatch(user):
        sec.problem("user", f"invalid user name '{user}'")
        user = None
    in_url = _url_user(url) if url else None
    if user is not None and in_url is not None and user != in_url:
        sec.problem("user", f"the url logs in as '{in_url}' but ssh.user says '{user}'; keep one")
    identity = sec.readable_file("identity", base)
    if identity is not None and (why := _key_problem(identity)) is not None:
        sec.problem("identity", why)
    known_hosts = sec.readable_file("known_hosts", base)
    if known_hosts is not None and (why := _known_hosts_problem(known_hosts)) is not None:
        sec.problem("known_hosts", why)
    if known_hosts is None and not sec.has("known_hosts") and scheme == "ssh":
        _check_default_known_hosts(sec, "known_hosts")
    socket = sec.text("socket")
    if socket is not None and not socket.startswith("/"):
        sec.problem("socket", f"expected an absolute path to the remote Docker socket, got '{socket}'")
        socket = None
    connect_timeout = sec.duration("connect_timeout")
    keepalive = sec.duration("keepalive_interval", allow_zero=True)
    return SSHSettings(
        user=user,
        identity=identity,
        known_hosts=known_hosts,
        socket=socket or default.socket,
        connect_timeout=default.connect_timeout if connect_timeout is None else connect_timeout,
        keepalive_interval=default.keepalive_interval if keepalive is None else keepalive,
    )


def _check_default_known_hosts(sec: Section, key: str) -> None:
    """Without ssh.known_hosts, ~/.ssh/known_hosts of the user running fleetd must exist."""
    path = Path.home() / ".ssh" / "known_hosts"
    if readable_problem(path) is not None:
        sec.problems.add(
            sec.file,
            sec.value_line(key) if key == "url" else sec.line,
            sec.sub(key),
            f"no known_hosts file: {path} is not readable and ssh.known_hosts is not set; name a file "
            "holding this host's key (ssh-keyscan HOST >> FILE, after checking the fingerprint)",
        )


def _key_problem(path: Path) -> str | None:
    """Why the identity file cannot be used without prompting, or None."""
    import asyncssh

    try:
        asyncssh.read_private_key(str(path))
    except asyncssh.KeyEncryptionError:
        return (
            f"{path} is protected by a passphrase and fleetd never prompts: load it into an ssh-agent "
            "and leave ssh.identity unset, or use a key without a passphrase"
        )
    except asyncssh.KeyImportError as exc:
        if "passphrase" in str(exc).lower():
            return (
                f"{path} is protected by a passphrase and fleetd never prompts: load it into an ssh-agent "
                "and leave ssh.identity unset, or use a key without a passphrase"
            )
        return f"{path} is not a private key fleetd can read ({exc}); a .pub file is the public half"
    except (OSError, ValueError) as exc:
        return f"cannot read {path}: {exc}"
    return None


def _known_hosts_problem(path: Path) -> str | None:
    import asyncssh

    try:
        asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError, asyncssh.KeyImportError) as exc:
        return f"{path} is not a known_hosts file: {exc}"
    return None
