"""The second listener's life: bind (TCP, TLS with client certificates, or a unix socket with
mode 0660), serve, and close. Off unless ``docker_api:`` is in the config."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from fleetd.config.docker_api import DockerAPISettings
from fleetd.config.model import Settings
from fleetd.dockercompat.app import create_docker_app
from fleetd.dockercompat.context import Service
from fleetd.dockercompat.tlsserver import serve_tls
from fleetd.dockercompat.upstream import FleetAccess
from fleetd.web.listener import ConnectionGuard, GuardedRunner

if TYPE_CHECKING:
    from fleetd.runtime import Fleet

__all__ = ["DockerListener", "server_ssl_context"]

log = structlog.get_logger("fleetd.dockercompat")


def server_ssl_context(settings: DockerAPISettings) -> ssl.SSLContext | None:
    """Reads certificate files: call it off the event loop."""
    tls = settings.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.ca is not None:
        ctx.load_verify_locations(cafile=str(tls.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _clear_stale_socket(path: Path) -> None:
    """A socket file left by a previous fleetd is removed; anything else there is an error."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: stale
        return
    finally:
        probe.close()
    raise OSError(f"{path} is in use by another process")


class DockerListener:
    """Owns the Docker endpoint's runner and site; ``aclose()`` is safe to call twice."""

    def __init__(self, fleet: FleetAccess, settings: DockerAPISettings, *, shutdown_timeout: float = 5.0) -> None:
        self.settings = settings
        # read-only mode, roles and the token requirement follow reloads; the address needs a restart
        self.service = Service(fleet, lambda: fleet.settings().docker_api or self.settings)
        # The main listener's self-defence too: idle and slow clients cut, connections capped.
        hygiene = fleet.settings().listener
        self._runner = GuardedRunner(
            create_docker_app(self.service),
            ConnectionGuard(hygiene),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,  # a client that left must not hold upstream streams open
            shutdown_timeout=shutdown_timeout,
            keepalive_timeout=hygiene.idle_timeout,
        )
        self._site: web.BaseSite | None = None
        self._tls_server: asyncio.Server | None = None
        self._started = False
        self.url: str = settings.address

    @classmethod
    def for_fleet(cls, fleet: Fleet, settings: DockerAPISettings) -> DockerListener:
        """The listener as a part of the running fleet (``fleet.add_part(...)``)."""
        access = FleetAccess(
            fleet.state, fleet.poller, fleet.connections, lambda: fleet.settings, fleet.auditor, fleet.auth_failures
        )
        return cls(access, settings, shutdown_timeout=fleet.settings.shutdown_grace)

    async def start(self) -> None:
        """Bind and serve; ``url`` is then the address clients use (the bound port when 0 was asked)."""
        cfg = self.settings
        site: web.BaseSite | None = None
        await self._runner.setup()
        try:
            if cfg.unix_path is not None:
                await asyncio.to_thread(_clear_stale_socket, cfg.unix_path)
                site = web.UnixSite(self._runner, str(cfg.unix_path))
                await site.start()
                await asyncio.to_thread(os.chmod, cfg.unix_path, cfg.socket_mode)
                self.url = f"unix://{cfg.unix_path}"
            else:
                ctx = await asyncio.to_thread(server_ssl_context, cfg)
                if ctx is not None:  # our own TLS server: it keeps the half-close exec/attach need
                    assert self._runner.server is not None
                    self._tls_server = await serve_tls(self._runner.server, cfg.host, cfg.port, ctx)
                    sockets = self._tls_server.sockets
                else:
                    site = web.TCPSite(self._runner, cfg.host, cfg.port)
                    await site.start()
                    server = getattr(site, "_server", None)
                    sockets = server.sockets if server is not None else ()
                port = sockets[0].getsockname()[1] if sockets else cfg.port
                host = f"[{cfg.host}]" if cfg.host and ":" in cfg.host else cfg.host
                self.url = f"{'https' if ctx else 'tcp'}://{host}:{port}"
        except BaseException:
            await self._runner.cleanup()
            raise
        self._site = site
        self._started = True
        log.info("docker endpoint listening", url=self.url, read_only=cfg.read_only, tls=cfg.tls is not None)

    async def reconfigure(self, settings: Settings) -> None:
        """After a reload: roles, the token requirement and read-only mode follow it at once (the
        service reads them per call); a new address or TLS needs a restart, which is logged."""
        new = settings.docker_api
        if new is None or (new.address, new.tls) != (self.settings.address, self.settings.tls):
            log.warning(
                "docker_api listen/tls changed: restart fleetd to apply",
                running=self.url,
                configured=new.address if new is not None else "off",
            )

    async def aclose(self) -> None:
        if not self._started:
            return
        self._started = False
        tls, self._tls_server = self._tls_server, None
        if tls is not None:
            tls.close()  # no new connections; the runner's cleanup closes the open ones
        await self._runner.cleanup()
        if tls is not None:
            await tls.wait_closed()
        if self.settings.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(self.settings.unix_path.unlink)
