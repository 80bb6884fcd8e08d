"""SSH failures as the Engine client's errors, each with a message that says what to do.

``down``: the SSH server cannot be reached, or the handshake does not finish in time
(:class:`EngineUnreachable`, :class:`EngineTimeout`). ``error``: it was reached but will not
carry fleetd to the daemon (:class:`EngineSSHError`): an unknown or changed host key (naming
the key's fingerprint and how to accept it), a refused key, an identity file that cannot be
used, a remote socket that is missing or not permitted (naming the path and the user), or
an sshd that forbids stream-local forwarding.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from fleetd.dockerapi.errors import DockerError, EngineSSHError, EngineTimeout, EngineUnreachable

if TYPE_CHECKING:
    from fleetd.dockerapi.ssh import SSHConfig

__all__ = [
    "HostKeyTrust",
    "channel_error",
    "connect_error",
    "identity_error",
    "known_hosts_error",
    "lost_error",
]

_OPEN_ADMINISTRATIVELY_PROHIBITED = 1
_DIAGNOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class HostKeyTrust:
    known_hosts: Path
    known_exists: bool
    trusted: tuple[asyncssh.SSHKey, ...]  # what known_hosts holds for this host
    offered: asyncssh.SSHKey | None  # what the server presented, when it was not trusted


def _url(config: SSHConfig) -> str:
    return f"ssh://{config.address}"


def _describe_key(key: asyncssh.SSHKey) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint()}"


def _known_hosts_name(config: SSHConfig) -> str:
    """The host as known_hosts and ssh-keygen -R write it."""
    return config.host if config.port == 22 else f"[{config.host}]:{config.port}"


def _keyscan(config: SSHConfig, key: asyncssh.SSHKey, path: Path) -> str:
    algorithm = key.get_algorithm()
    kind = "ed25519" if "ed25519" in algorithm else "ecdsa" if "ecdsa" in algorithm else "rsa"
    port = "" if config.port == 22 else f" -p {config.port}"
    return f"ssh-keyscan{port} -t {kind} {shlex.quote(config.host)} >> {shlex.quote(str(path))}"


def host_key_error(config: SSHConfig, trust: HostKeyTrust, detail: str) -> EngineSSHError:
    where, path = config.address, trust.known_hosts
    offered = trust.offered
    if offered is None:  # revoked, or a certificate problem: asyncssh's reason is the best we have
        return EngineSSHError(
            "host-key", f"host key of {where} not accepted ({detail}); known_hosts: {path}", url=_url(config)
        )
    if not trust.trusted:
        missing = "" if trust.known_exists else " (the file does not exist yet)"
        return EngineSSHError(
            "host-key",
            f"unknown host key for {_known_hosts_name(config)}: the server offered {_describe_key(offered)}, "
            f"which is not in {path}{missing}. Check that fingerprint on the host "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then accept it: {_keyscan(config, offered, path)}",
            url=_url(config),
        )
    known = ", ".join(_describe_key(k) for k in trust.trusted)
    return EngineSSHError(
        "host-key",
        f"HOST KEY CHANGED for {_known_hosts_name(config)}: the server offered {_describe_key(offered)}, "
        f"but {path} has {known}. Someone may be intercepting the connection; if the host was "
        f"reinstalled, replace the entry: ssh-keygen -R {shlex.quote(_known_hosts_name(config))} "
        f"-f {shlex.quote(str(path))} && {_keyscan(config, offered, path)}",
        url=_url(config),
    )


def _strerror(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name: {exc.strerror or exc}"
    return os.strerror(exc.errno).lower() if exc.errno else str(exc) or type(exc).__name__


def connect_error(config: SSHConfig, exc: BaseException, trust: HostKeyTrust) -> DockerError:
    """Why opening (TCP, handshake, authentication) the SSH connection failed."""
    url, where = _url(config), config.address
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return host_key_error(config, trust, exc.reason)
    if isinstance(exc, asyncssh.PermissionDenied):
        identity = config.options.identity
        offered = f"the key in {identity}" if identity else "the ssh-agent's keys and ~/.ssh/id_*"
        return EngineSSHError(
            "auth",
            f"SSH server {where} refused key authentication as '{config.user}' (fleetd offered {offered}; "
            f"passwords are never used): add the matching public key to ~{config.user}/.ssh/authorized_keys "
            "on the host, or set ssh.identity / ssh.user",
            url=url,
        )
    if isinstance(exc, (asyncio.TimeoutError, asyncssh.TimeoutError)):
        return EngineTimeout(
            f"SSH connection to {where} not established within {config.options.connect_timeout:g}s "
            "(ssh.connect_timeout)",
            url=url,
        )
    if isinstance(exc, (asyncssh.KeyExchangeFailed, asyncssh.ProtocolError, asyncssh.IllegalUserName)):
        return EngineSSHError("protocol", f"SSH handshake with {where} failed: {exc.reason}", url=url)
    if isinstance(exc, asyncssh.DisconnectError):
        return EngineUnreachable(f"SSH server {where} closed the connection: {exc.reason}", url=url)
    if isinstance(exc, OSError):
        return EngineUnreachable(f"cannot connect to SSH server {where}: {_strerror(exc)}", url=url)
    return EngineUnreachable(f"SSH connection to {where} failed: {exc!r}", url=url)


def lost_error(config: SSHConfig, exc: BaseException) -> EngineUnreachable:
    reason = exc.reason if isinstance(exc, asyncssh.DisconnectError) else str(exc) or type(exc).__name__
    return EngineUnreachable(f"SSH connection to {config.address} lost: {reason}", url=_url(config))


def identity_error(config: SSHConfig, path: Path, exc: BaseException) -> EngineSSHError:
    if isinstance(exc, asyncssh.KeyEncryptionError) or "passphrase" in str(exc).lower():
        why = "is protected by a passphrase and fleetd never prompts: load it into an ssh-agent and leave ssh.identity unset, or use a key without one"
    elif isinstance(exc, OSError):
        why = f"cannot be read: {exc.strerror or exc}"
    else:
        why = f"is not a private key asyncssh can read: {exc}"
    return EngineSSHError("auth", f"identity file {path} for {config.address} {why}", url=_url(config))


def known_hosts_error(config: SSHConfig, path: Path, exc: BaseException) -> EngineSSHError:
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return EngineSSHError(
        "host-key", f"known_hosts file {path} for {config.address} cannot be used: {why}", url=_url(config)
    )


_PROBE = (
    'if [ ! -e "$1" ]; then echo missing; elif [ ! -S "$1" ]; then echo not-a-socket; '
    'elif [ ! -r "$1" ] || [ ! -w "$1" ]; then echo denied; else echo present; fi'
)


async def _probe_socket(conn: asyncssh.SSHClientConnection, path: str) -> str | None:
    """Ask the host (one command over the same connection) why the socket did not open."""
    command = f"sh -c {shlex.quote(_PROBE)} fleetd-probe {shlex.quote(path)}"
    try:
        result = await asyncio.wait_for(conn.run(command, check=False), _DIAGNOSE_TIMEOUT)
    except (TimeoutError, OSError, asyncssh.Error):
        return None  # exec may be forbidden (ForceCommand, restrict): fall back to sshd's word
    out = result.stdout if isinstance(result.stdout, str) else ""
    answer = out.strip()
    return answer if answer in ("missing", "not-a-socket", "denied", "present") else None


async def channel_error(
    config: SSHConfig, conn: asyncssh.SSHClientConnection, exc: asyncssh.ChannelOpenError
) -> DockerError:
    """sshd would not open the stream-local channel to the remote socket; find out why."""
    url, host, path, user = _url(config), config.host, config.socket, config.user
    if exc.code == _OPEN_ADMINISTRATIVELY_PROHIBITED:
        return EngineSSHError(
            "forwarding",
            f"sshd on {config.address} refused a stream-local channel to {path} ({exc.reason}): allow "
            "'AllowStreamLocalForwarding yes' and 'AllowTcpForwarding local' (or yes) in its sshd_config, "
            "and no 'restrict' or 'no-port-forwarding' on the key's authorized_keys line",
            url=url,
        )
    answer = await _probe_socket(conn, path)
    if answer == "missing":
        return EngineSSHError(
            "socket",
            f"remote socket {path} does not exist on {host} (checked as user '{user}'): is dockerd "
            "running there? If it listens on another socket, set ssh.socket",
            url=url,
        )
    if answer == "not-a-socket":
        return EngineSSHError("socket", f"{path} on {host} is not a socket; set ssh.socket", url=url)
    if answer == "denied":
        return EngineSSHError(
            "socket",
            f"user '{user}' may not open the remote socket {path} on {host} (permission denied): add "
            f"'{user}' to the socket's group (usually docker) or connect as a user who may",
            url=url,
        )
    if answer == "present":
        return EngineSSHError(
            "forwarding",
            f"sshd on {config.address} would not connect to {path}, which exists and '{user}' may open: "
            "either dockerd is not listening on it, or sshd forbids forwarding ('AllowTcpForwarding no' or "
            "'AllowStreamLocalForwarding no' in sshd_config, 'restrict' or 'no-port-forwarding' on the key's "
            "authorized_keys line)",
            url=url,
        )
    return EngineSSHError(
        "socket",
        f"sshd on {host} could not open the remote socket {path} for user '{user}' ({exc.reason}): it is "
        "missing, or that user may not open it",
        url=url,
    )
