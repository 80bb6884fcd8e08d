"""TLS for the Docker endpoint that keeps a client's half-close.

The docker CLI ends its side of a hijacked stream with a TLS close_notify (``tls.Conn.CloseWrite``)
and then reads the output. asyncio's TLS protocol answers a close_notify by shutting the whole
connection down, whatever the application protocol wants (it even warns that returning True from
``eof_received`` "has no effect when using ssl"), so ``docker --tlsverify exec c ls`` would print
nothing. :class:`HalfCloseTLS` keeps sending when the application protocol asked to stay open
(``eof_received()`` → True, as the hijack pipe does) and shuts down once the application closes.
Everything else is asyncio's own ``SSLProtocol``.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from typing import Any

__all__ = ["HalfCloseTLS", "serve_tls"]


class HalfCloseTLS(sslproto.SSLProtocol):
    _peer_done_writing = False

    def _call_eof_received(self) -> None:  # the peer's close_notify
        this: Any = self
        try:
            if this._app_state == sslproto.AppProtocolState.STATE_CON_MADE:
                this._app_state = sslproto.AppProtocolState.STATE_EOF
                self._peer_done_writing = bool(this._app_protocol.eof_received())
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as ex:
            self._fatal_error(ex, "Error calling eof_received()")

    def _start_shutdown(self) -> None:
        app = self._app_transport
        if self._peer_done_writing and app is not None and not app._closed:
            return  # only half-closed by the peer: the application still sends, and closes later
        super()._start_shutdown()


async def serve_tls(
    factory: Any, host: str | None, port: int, ctx: ssl.SSLContext, *, handshake_timeout: float = 30.0
) -> asyncio.Server:
    """``loop.create_server`` with TLS done by :class:`HalfCloseTLS` around ``factory()``."""
    loop = asyncio.get_running_loop()

    def make() -> asyncio.BaseProtocol:
        tls: Any = HalfCloseTLS
        protocol: asyncio.BaseProtocol = tls(
            loop, factory(), ctx, None, server_side=True, ssl_handshake_timeout=handshake_timeout
        )
        return protocol

    return await loop.create_server(make, host, port, reuse_address=True)
