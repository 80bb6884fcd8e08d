"""Closing the pools aborts a TLS connection whose cancelled request left it waiting for the
peer's close_notify, so no socket outlives fleetd's event loop."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest

from fleetd.dockerapi import DockerClient, EngineConnections, TLSConfig


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_cancelled_tls_request_leaves_no_open_socket(server_cert: tuple[Path, Path]) -> None:
    cert, key = server_cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    got_request = asyncio.Event()
    release = asyncio.Event()
    frozen = False

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        got_request.set()
        await release.wait()  # a hung daemon: never answers
        writer.close()

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if not frozen:  # once frozen, nothing gets through: no close_notify ever returns
                    dst.write(data)
        except ConnectionError:
            pass

    proxy_tasks: set[asyncio.Task[None]] = set()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", tls_port)
        for t in (pump(reader, up_w), pump(up_r, writer)):
            task = asyncio.ensure_future(t)
            proxy_tasks.add(task)
        await release.wait()
        up_w.close()
        writer.close()

    tls_server = await asyncio.start_server(hang, "127.0.0.1", 0, ssl=ctx)
    tls_port = tls_server.sockets[0].getsockname()[1]
    proxy_server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_port = proxy_server.sockets[0].getsockname()[1]
    try:
        pools = EngineConnections()
        client = DockerClient(
            f"https://127.0.0.1:{proxy_port}",
            tls=TLSConfig(verify=False),
            connections=pools,
            api_version="1.41",
        )
        await pools.prepare_ssl(client.endpoint)  # built in a thread, as the fleet's ClientFactory does
        request = asyncio.ensure_future(client.system.info(timeout=30))
        await asyncio.wait_for(got_request.wait(), 5)
        connector = pools._tcp_connector
        assert connector is not None
        sockets = [t.get_extra_info("socket") for t in connector.transports.values()]
        assert sockets and all(s.fileno() != -1 for s in sockets)
        frozen = True
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await pools.aclose()
        for _ in range(3):
            await asyncio.sleep(0)
        assert all(s.fileno() == -1 for s in sockets), "a TLS socket is still open after aclose()"
    finally:
        release.set()
        for task in proxy_tasks:
            task.cancel()
        await asyncio.gather(*proxy_tasks, return_exceptions=True)
        proxy_server.close()
        tls_server.close()
        await proxy_server.wait_closed()
        await tls_server.wait_closed()
