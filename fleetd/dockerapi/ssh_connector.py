"""An aiohttp connector whose connections are SSH stream-local channels to a remote Docker socket.

aiohttp's HTTP client speaks to an :class:`asyncio.Transport`; each connection this connector
makes is a ``direct-streamlocal@openssh.com`` channel on the host's one :class:`SSHTunnel`,
adapted to that interface (:class:`ChannelTransport` on the way out, :class:`_ChannelSession`
feeding aiohttp's protocol on the way in, with flow control in both directions). aiohttp's pool
keeps idle channels for keep-alive exactly as it keeps TCP sockets, so a steady poll opens no
new channel at all, and the SSH connection under them is opened once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import aiohttp
import asyncssh
from aiohttp.client_proto import ResponseHandler

from fleetd.dockerapi.ssh import SSHTunnel

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.tracing import Trace

__all__ = ["ChannelTransport", "SSHConnector", "open_channel_stream"]


class ChannelTransport(asyncio.Transport):
    """An SSH channel seen as an asyncio transport (what aiohttp's protocol writes to)."""

    def __init__(self, chan: asyncssh.SSHUNIXChannel[bytes], peer: str) -> None:
        super().__init__()
        self._chan = chan
        self._peer = peer
        self._reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._chan.write(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._chan.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self._chan.write_eof()

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self._chan.is_closing()

    def close(self) -> None:
        self._chan.close()

    def abort(self) -> None:
        self._chan.abort()

    def pause_reading(self) -> None:
        self._reading = False
        self._chan.pause_reading()

    def resume_reading(self) -> None:
        self._reading = True
        self._chan.resume_reading()

    def is_reading(self) -> bool:
        return self._reading

    def get_write_buffer_size(self) -> int:
        return self._chan.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._chan.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        return self._chan.get_extra_info(name, default)


class _ChannelSession(asyncssh.SSHUNIXSession[bytes]):
    """Hands what arrives on the channel to an asyncio protocol (aiohttp's, or a stream's)."""

    def __init__(self, protocol: ResponseHandler | asyncio.StreamReaderProtocol, peer: str) -> None:
        self._protocol = protocol
        self._peer = peer
        self.transport: ChannelTransport | None = None

    def connection_made(self, chan: asyncssh.SSHUNIXChannel[bytes]) -> None:
        self.transport = ChannelTransport(chan, self._peer)
        self._protocol.connection_made(self.transport)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._protocol.data_received(data)

    def eof_received(self) -> bool:
        self._protocol.eof_received()
        return False  # the daemon is done: close the channel

    def connection_lost(self, exc: Exception | None) -> None:
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()


def _close_if_opened(task: asyncio.Future[tuple[asyncssh.SSHUNIXChannel[bytes], Any]]) -> None:
    """A channel whose opener was cancelled (request timeout) is closed when it does open."""
    if task.cancelled() or task.exception() is not None:
        return
    chan, _ = task.result()
    chan.close()


class SSHConnector(aiohttp.BaseConnector):
    """Connections for one host: channels on its :class:`SSHTunnel`, which this connector owns."""

    allowed_protocol_schema_set = frozenset({"http"})

    def __init__(self, tunnel: SSHTunnel, *, keepalive_timeout: float, limit: int = 0) -> None:
        super().__init__(keepalive_timeout=keepalive_timeout, limit=limit)
        self.tunnel = tunnel
        self._peer = f"ssh://{tunnel.config.address}{tunnel.config.socket}"

    async def _create_connection(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> ResponseHandler:
        protocol = self._factory()
        opening = asyncio.ensure_future(self.tunnel.open_unix(lambda: _ChannelSession(protocol, self._peer)))
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_if_opened)
            raise
        return protocol

    async def close(self, *, abort_ssl: bool = False) -> None:
        """Close pooled channels, then the SSH connection itself."""
        await super().close(abort_ssl=abort_ssl)
        await self.tunnel.aclose()


async def open_channel_stream(
    tunnel: SSHTunnel, *, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A fresh channel to the remote socket as an asyncio stream pair (for hijacked connections:
    attach, exec), never a pooled one; ``write_eof()`` half-closes it like a socket's shutdown."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    peer = f"ssh://{tunnel.config.address}{tunnel.config.socket}"
    session = _ChannelSession(protocol, peer)
    await tunnel.open_unix(lambda: session)
    assert session.transport is not None  # set when the channel opened
    return reader, asyncio.StreamWriter(session.transport, protocol, reader, loop)
