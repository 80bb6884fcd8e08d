"""What a failed request becomes: aiohttp's, the socket's and TLS's exceptions mapped into the error
tree of :mod:`fleetd.dockerapi.errors`, with messages that name the daemon and what failed."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl

import aiohttp

from fleetd.dockerapi.answers import NOT_DOCKER, payload_reason
from fleetd.dockerapi.errors import (
    DockerError,
    EngineProtocolError,
    EngineTimeout,
    EngineTLSError,
    EngineUnreachable,
)

__all__ = ["map_failure"]


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def map_failure(exc: BaseException, where: str, url: str, timeout: float) -> DockerError:
    """The client's error for what aiohttp, the socket or TLS raised during ``where``."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return EngineTimeout(f"no answer within {timeout:g}s to {where}", url=url)
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError)):
        return EngineTLSError(f"TLS handshake with {url} failed: {exc}", url=url)
    tls_cause = _ssl_cause(exc)
    if tls_cause is not None:
        # TLS 1.3 finishes the handshake before the server checks our certificate, so a
        # refused client certificate shows up as an alert on the first request.
        reason = tls_cause.reason or str(tls_cause)
        if reason in ("SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
            return EngineTLSError(
                f"{url} rejected fleetd's TLS client certificate ({reason}): check this host's "
                "tls.cert and tls.key and that the daemon's --tlscacert signed them",
                url=url,
            )
        return EngineTLSError(f"TLS error talking to {url} during {where}: {tls_cause}", url=url)
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or (
        isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, socket.gaierror)
    ):
        gai = exc.os_error
        reason = gai.strerror or str(gai)
        return EngineUnreachable(f"cannot resolve {exc.host}: {reason.lower()} (for {url})", url=url)
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        reason = os.strerror(err.errno).lower() if err.errno else str(err)
        return EngineUnreachable(f"cannot connect to {url}: {reason}", url=url)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return EngineUnreachable(f"{url} closed the connection during {where}", url=url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        # The connection broke mid-body (reset, closed before Content-Length, bad chunk
        # framing): a transport failure, like a refused connection, not a bad answer.
        return EngineUnreachable(f"{url} cut short its answer to {where}: {payload_reason(exc)}", url=url)
    if isinstance(exc, (aiohttp.ClientOSError, OSError)):
        return EngineUnreachable(f"connection to {url} failed during {where}: {exc}", url=url)
    if isinstance(exc, aiohttp.ClientResponseError):
        if "too long" in exc.message.lower() or "more than" in exc.message.lower():
            return EngineProtocolError(
                f"the answer to {where} has a status line or header larger than 8190 bytes "
                f"(the limit fleetd reads): {NOT_DOCKER}",
                url=url,
            )
        if "too many headers" in exc.message.lower():
            return EngineProtocolError(
                f"the answer to {where} has more than 128 headers: {NOT_DOCKER}", url=url
            )
        return EngineProtocolError(f"invalid HTTP answer to {where}: {exc.message}", url=url)
    if isinstance(exc, aiohttp.ClientError):
        return EngineUnreachable(f"request {where} failed: {exc}", url=url)
    return DockerError(f"request {where} failed: {exc!r}", url=url)
