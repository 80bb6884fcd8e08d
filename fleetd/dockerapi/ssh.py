"""One SSH connection per daemon host, carrying every Engine request as a stream-local channel.

``ssh://user@host:port`` reaches the daemon the way ``docker -H ssh://...`` does, without any
Docker port open: fleetd logs in with a key and opens a ``direct-streamlocal@openssh.com``
channel to the remote ``/var/run/docker.sock`` for each HTTP connection. An :class:`SSHTunnel`
owns that one SSH connection: it is opened on first use, shared by every request (polls,
events, actions, logs), kept alive with SSH keepalives and rebuilt on the next request after it
drops (the poller's backoff decides when that is). Failures are the Engine client's errors, so
they fall into ``down`` (unreachable, handshake timeout) or ``error`` (host key, authentication,
remote socket) like any other host's.

Key files and known_hosts are read in a thread at every connect, so a key accepted into
known_hosts is used at the next attempt without a reload, and the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from types import TracebackType
from typing import Any

import asyncssh

from fleetd.dockerapi.errors import DockerError, EngineUnreachable
from fleetd.dockerapi.ssh_config import DEFAULT_SOCKET, SSHConfig, SSHOptions
from fleetd.dockerapi.ssh_errors import (
    HostKeyTrust,
    channel_error,
    connect_error,
    identity_error,
    known_hosts_error,
    lost_error,
)

__all__ = ["DEFAULT_SOCKET", "SSHConfig", "SSHOptions", "SSHTunnel"]

class _Client(asyncssh.SSHClient):
    """Remembers the host key a server offered and why the connection ended."""

    def __init__(self, tunnel: SSHTunnel) -> None:
        self._tunnel = tunnel
        self.offered_key: asyncssh.SSHKey | None = None
        self.conn: asyncssh.SSHClientConnection | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        # Called only for a key known_hosts does not trust: keep it for the error message.
        self.offered_key = key
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self._tunnel._lost(self.conn, exc)


def _load_credentials(config: SSHConfig) -> tuple[asyncssh.SSHKnownHosts, list[asyncssh.SSHKey] | None]:
    """known_hosts and the identity key, read from disk (run in a thread). Raises DockerError."""
    path = config.known_hosts_path()
    try:
        known = asyncssh.read_known_hosts(str(path))
    except FileNotFoundError:
        known = asyncssh.SSHKnownHosts()  # nothing trusted: the first connect says how to add the key
    except (OSError, ValueError) as exc:
        raise known_hosts_error(config, path, exc) from exc
    identity = config.options.identity
    if identity is None:
        return known, None
    try:
        key = asyncssh.read_private_key(str(identity))
    except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        raise identity_error(config, identity, exc) from exc
    return known, [key]


def _connect_options(
    config: SSHConfig, tunnel: SSHTunnel, known: asyncssh.SSHKnownHosts, keys: list[asyncssh.SSHKey] | None
) -> asyncssh.SSHClientConnectionOptions:
    """Key authentication only, never a prompt, no ~/.ssh/config: the inventory is the whole truth.

    Built in a thread: without an identity file asyncssh reads the default ~/.ssh/id_* keys here."""
    opts = config.options
    extra: dict[str, Any] = {}
    if keys is not None:
        extra["client_keys"] = keys
        extra["agent_path"] = None  # the configured key and nothing else (ssh's IdentitiesOnly)
    return asyncssh.SSHClientConnectionOptions(
        username=config.user,
        port=config.port,
        known_hosts=known,
        client_factory=tunnel._new_client,
        password_auth=False,
        kbdint_auth=False,
        gss_auth=False,
        gss_kex=False,
        host_based_auth=False,
        passphrase=None,
        ignore_encrypted=True,
        config=None,
        connect_timeout=opts.connect_timeout,
        login_timeout=opts.connect_timeout,
        keepalive_interval=opts.keepalive_interval,
        keepalive_count_max=3,
        x509_trusted_certs=None,
        # AES-GCM first (one AEAD call per packet, AES-NI through OpenSSL): about half the extra CPU
        # per poll of asyncssh's default first choice, chacha20-poly1305 (bench/RESULTS-ssh.md).
        encryption_algs="^aes128-gcm@openssh.com,aes256-gcm@openssh.com",
        **extra,
    )


class SSHTunnel:
    """Owner of the SSH connection to one host; every channel it opens ends when it closes."""

    def __init__(self, config: SSHConfig) -> None:
        self.config = config
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connecting: asyncio.Future[asyncssh.SSHClientConnection] | None = None
        self._closed = False
        #: how many SSH connections this tunnel has established (one while it stays up)
        self.connects = 0
        self.last_loss: str | None = None
        self._client: _Client | None = None  # of the latest handshake, kept for its offered host key
        # Why the remote socket would not open, found out once per connection (it runs a command on
        # the host, which can take longer than a poll's timeout) and reused by the polls after it.
        self._socket_diagnosis: tuple[asyncssh.SSHClientConnection, asyncio.Future[DockerError]] | None = None

    def _new_client(self) -> _Client:
        self._client = _Client(self)
        return self._client

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The live connection, opening one if needed; concurrent callers share one attempt.

        The attempt runs in a task of its own, bounded by ``connect_timeout``, so a request that
        times out waiting for it does not cut the handshake short for the requests after it."""
        if self._closed:
            raise EngineUnreachable(f"SSH connection to {self.config.address} is closed", url=self._url)
        if self._conn is not None:
            return self._conn
        task = self._connecting
        if task is None:
            task = self._connecting = asyncio.ensure_future(self._connect())
            task.add_done_callback(self._connect_done)
        return await asyncio.shield(task)

    def _connect_done(self, task: asyncio.Future[asyncssh.SSHClientConnection]) -> None:
        self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody waited for is not reported twice

    @property
    def _url(self) -> str:
        return f"ssh://{self.config.address}"

    async def _connect(self) -> asyncssh.SSHClientConnection:
        config = self.config
        known, keys = await asyncio.to_thread(_load_credentials, config)
        options = await asyncio.to_thread(_connect_options, config, self, known, keys)
        self._client = None
        try:
            conn = await asyncssh.connect(config.host, options=options)
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise connect_error(config, exc, _trust(config, known, self._client)) from exc
        if self._closed:  # closed while the handshake ran
            conn.close()
            raise EngineUnreachable(f"SSH connection to {config.address} is closed", url=self._url)
        self._conn = conn
        self.connects += 1
        return conn

    def _lost(self, conn: asyncssh.SSHClientConnection, exc: Exception | None) -> None:
        if self._conn is conn:
            self._conn = None
            self.last_loss = str(exc) if exc is not None else "closed"

    def drop(self, conn: asyncssh.SSHClientConnection) -> None:
        """Forget a connection that failed a channel open for transport reasons; the next request reconnects."""
        if self._conn is conn:
            self._conn = None
            conn.abort()

    async def open_unix(
        self, session_factory: Callable[[], asyncssh.SSHUNIXSession[bytes]]
    ) -> tuple[asyncssh.SSHUNIXChannel[bytes], asyncssh.SSHUNIXSession[bytes]]:
        """A new channel to the remote socket; raises the Engine client's errors."""
        conn = await self.connection()
        try:
            opened = await conn.create_unix_connection(session_factory, self.config.socket)
        except asyncssh.ChannelOpenError as exc:
            if exc.reason == "SSH connection closed" or conn.is_closed():  # lost meanwhile, not refused
                self.drop(conn)
                raise lost_error(self.config, exc) from exc
            raise await self._diagnose(conn, exc) from exc
        except (OSError, asyncssh.Error) as exc:
            self.drop(conn)
            raise lost_error(self.config, exc) from exc
        self._socket_diagnosis = None
        return opened

    async def _diagnose(self, conn: asyncssh.SSHClientConnection, exc: asyncssh.ChannelOpenError) -> DockerError:
        cached = self._socket_diagnosis
        if cached is None or cached[0] is not conn:
            task = asyncio.ensure_future(channel_error(self.config, conn, exc))
            cached = self._socket_diagnosis = (conn, task)
        return await asyncio.shield(cached[1])

    async def aclose(self) -> None:
        """Close the SSH connection (and so every channel on it); safe to call twice."""
        self._closed = True
        task = self._connecting
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._socket_diagnosis is not None:
            self._socket_diagnosis[1].cancel()
            await asyncio.gather(self._socket_diagnosis[1], return_exceptions=True)
            self._socket_diagnosis = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()

    async def __aenter__(self) -> SSHTunnel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _trust(config: SSHConfig, known: asyncssh.SSHKnownHosts, client: _Client | None) -> HostKeyTrust:
    """What known_hosts says about this host, and what the server offered, for host-key errors."""
    trusted, _cas, _revoked, *_rest = known.match(config.host, config.host, None if config.port == 22 else config.port)
    return HostKeyTrust(
        known_hosts=config.known_hosts_path(),
        known_exists=os.path.exists(config.known_hosts_path()),
        trusted=tuple(dict.fromkeys(trusted)),  # an entry can match both with and without the port
        offered=client.offered_key if client is not None else None,
    )

