"""A TLS client connection that can half-close: send close_notify and keep reading.

asyncio's TLS transport cannot ``write_eof()``, so the end of a client's stdin could not reach a
daemon that fleetd talks to over TLS (``echo x | docker exec -i h/c cat`` would never end). Here
TLS runs on a memory BIO over a plain TCP stream: ``write_eof()`` sends close_notify (SSL_shutdown
once) and decrypted data keeps arriving until the daemon ends its side.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

__all__ = ["TLSStream", "tls_connect"]

CHUNK = 64 * 1024


class TLSStream:
    """The writing half (StreamWriter-like); the reading half is an asyncio.StreamReader fed by a pump."""

    def __init__(self, raw_reader: asyncio.StreamReader, raw: asyncio.StreamWriter, sslobj: ssl.SSLObject,
                 incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:  # fmt: skip
        self._raw_reader = raw_reader
        self._raw = raw
        self._ssl = sslobj
        self._in = incoming
        self._out = outgoing
        self.transport = raw.transport
        self.reader = asyncio.StreamReader(limit=2**20)
        self._pump: asyncio.Task[None] | None = None
        self._eof_sent = False

    def _flush(self) -> None:
        data = self._out.read()
        if data and not self._raw.is_closing():
            self._raw.write(data)

    async def handshake(self) -> None:
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = await self._raw_reader.read(CHUNK)
                if not data:
                    raise ConnectionResetError("the daemon closed the connection during the TLS handshake") from None
                self._in.write(data)
        self._flush()
        self._pump = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    data = self._ssl.read(CHUNK)
                except ssl.SSLWantReadError:
                    self._flush()
                    raw = await self._raw_reader.read(CHUNK)
                    if not raw:
                        break
                    self._in.write(raw)
                    continue
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break  # the daemon's close_notify, or its TCP end
                if not data:
                    break
                self.reader.feed_data(data)
        except (ssl.SSLError, OSError) as exc:
            self.reader.set_exception(ConnectionResetError(str(exc)))
            return
        self.reader.feed_eof()

    def write(self, data: bytes) -> None:
        if self._eof_sent:
            return
        self._ssl.write(data)
        self._flush()

    async def drain(self) -> None:
        await self._raw.drain()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """close_notify: our side is done, theirs goes on."""
        if self._eof_sent:
            return
        self._eof_sent = True
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLError):
            self._ssl.unwrap()
        self._flush()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        self._raw.close()


async def tls_connect(host: str, port: int, ctx: ssl.SSLContext, server_hostname: str | None) -> TLSStream:
    raw_reader, raw = await asyncio.open_connection(host, port, limit=2**20)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname=server_hostname)
    stream = TLSStream(raw_reader, raw, sslobj, incoming, outgoing)
    try:
        await stream.handshake()
    except BaseException:
        raw.close()
        raise
    return stream
