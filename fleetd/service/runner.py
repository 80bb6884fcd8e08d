"""``fleetd run``: the service's life from config to exit.

Listening comes first (READY=1 is sent as soon as the API answers, never waiting for slow
hosts); SIGTERM/SIGINT stop everything within the grace period; SIGHUP reloads.

The HTTP side (aiohttp's server, the API's handlers) is imported when the listener is set up, and the
Docker-compatible endpoint only when ``docker_api`` is configured: ``fleetd run`` loads nothing it
does not use (``fleetd snapshot`` and ``check-config`` never load the server).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from fleetd.config import ConfigError, load_config
from fleetd.config.exposure import exposure_problem
from fleetd.config.live import ReloadFailed
from fleetd.config.model import Settings
from fleetd.dockerapi.connections import refuse_passphrase
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from fleetd.logconfig import configure_logging
from fleetd.runtime import Fleet
from fleetd.service.gcpolicy import CollectorPolicy
from fleetd.service.notify import Notifier, watchdog_loop
from fleetd.store.errors import StoreError

__all__ = ["fleet_status_line", "run_service"]

log = structlog.get_logger("fleetd")

CLOSE_ALLOWANCE = 2.0  # seconds past shutdown_grace for closing sockets, threads and the database


def fleet_status_line(state: FleetState) -> str:
    records = list(state.records())
    enabled = [r for r in records if r.status is not HostStatus.DISABLED]
    up = sum(1 for r in enabled if r.status is HostStatus.UP)
    containers = sum(len(r.containers) for r in records)
    return f"{up}/{len(enabled)} hosts up, {containers:,} containers"


def run_service(config_path: Path) -> int:
    try:
        settings = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"fleetd: not started: {len(exc.problems)} problem(s) in the configuration", file=sys.stderr)
        return 2
    if exposed := exposure_problem(settings):
        print(exposed, file=sys.stderr)
        print("fleetd: not started: the API would be open to the network", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    # Every request allocates many short-lived objects, and start-up creates a few hundred
    # thousand long-lived ones at once: a larger young generation lets the former die before
    # the cyclic collector promotes them (start-up CPU -13% with 1,000 hosts; see bench/).
    gc.set_threshold(10_000)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(_serve(settings, config_path))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    except LoopChoiceError as exc:
        print(f"fleetd: not started: {exc}", file=sys.stderr)
        return 2


class LoopChoiceError(RuntimeError):
    pass


def event_loop_factory(environ: Mapping[str, str] | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``FLEETD_EVENT_LOOP`` asks for: ``asyncio`` (the default), ``uvloop`` (the
    ``fast`` extra; refuse to start without it) or ``auto`` (uvloop when it is installed).
    None means asyncio's own loop."""
    choice = (os.environ if environ is None else environ).get("FLEETD_EVENT_LOOP", "asyncio").strip().lower()
    if choice not in ("auto", "uvloop", "asyncio"):
        raise LoopChoiceError(f"FLEETD_EVENT_LOOP={choice!r}: expected auto, uvloop or asyncio")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise LoopChoiceError("FLEETD_EVENT_LOOP=uvloop but uvloop is not installed (pip install 'fleetd[fast]')") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _listen_ssl(settings: Settings) -> ssl.SSLContext | None:
    if settings.listen_tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(settings.listen_tls.cert), str(settings.listen_tls.key), password=refuse_passphrase)
    return ctx


async def _serve(settings: Settings, config_path: Path) -> int:
    notifier = Notifier()
    fleet = Fleet(settings, listener=notifier)
    if settings.docker_api is not None:  # the Docker-compatible second listener: a part of the fleet
        from fleetd.dockercompat import DockerListener

        fleet.add_part(DockerListener.for_fleet(fleet, settings.docker_api))
    # The cyclic collector paced once the fleet is up (gc: in the config): full passes over the live heap
    # stopped the loop for up to a second at 10,000 hosts.
    collector = CollectorPolicy(fleet.state, settings.gc)
    fleet.metrics.registry.register(collector.pauses)
    fleet.add_part(collector)
    try:
        await fleet.start()
    except (OSError, ssl.SSLError) as exc:  # only the docker listener binds during start
        address = settings.docker_api.address if settings.docker_api else "?"
        log.error("cannot listen", listen=address, error=str(exc))
        notifier.close()
        return 1
    except StoreError as exc:
        # A database fleetd must not touch (another program's, a newer schema): say why, exit 2.
        log.error("not started: snapshot database refused", error=str(exc))
        print(f"fleetd: not started: {exc}", file=sys.stderr)
        notifier.close()
        return 2
    try:
        return await _listen(fleet, config_path, notifier)
    finally:
        try:
            async with asyncio.timeout(fleet.settings.shutdown_grace + 5):
                await fleet.aclose()
        except TimeoutError:
            log.warning("shutdown exceeded the grace period", grace=fleet.settings.shutdown_grace)
        notifier.close()


async def _listen(fleet: Fleet, config_path: Path, notifier: Notifier) -> int:
    from aiohttp import web  # imported here: see the module's docstring

    from fleetd.api.app import create_app
    from fleetd.web.listener import ConnectionGuard, GuardedRunner

    settings = fleet.settings
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    runner = GuardedRunner(
        create_app(fleet),
        ConnectionGuard(settings.listener),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_grace,
        keepalive_timeout=settings.listener.idle_timeout,
    )
    await runner.setup()
    try:
        ssl_ctx = await asyncio.to_thread(_listen_ssl, settings)
        site = web.TCPSite(runner, settings.listen_host, settings.listen_port, ssl_context=ssl_ctx)
        await site.start()
    except (OSError, ssl.SSLError) as exc:
        log.error("cannot listen", listen=f"{settings.listen_host}:{settings.listen_port}", error=str(exc))
        await runner.cleanup()
        return 1
    scheme = "https" if settings.listen_tls else "http"
    log.info(
        "fleetd listening",
        url=f"{scheme}://{settings.listen_host}:{settings.listen_port}",
        hosts=len(settings.hosts),
        config=str(settings.path),
        event_loop=type(loop).__module__.split(".")[0],  # asyncio or uvloop
    )
    notifier.ready()

    reloads: set[asyncio.Task[None]] = set()

    async def hup() -> None:
        try:
            await fleet.reload(config_path)
        except ReloadFailed:
            pass  # logged; the old configuration keeps running
        except Exception as exc:  # never "Task exception was never retrieved"
            log.error("reload failed", error=str(exc) or repr(exc), exc_info=exc)

    def on_hup() -> None:
        task = loop.create_task(hup())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    watchdog = loop.create_task(watchdog_loop(notifier, lambda: fleet_status_line(fleet.state)))
    try:
        await stop.wait()
    finally:
        started = time.monotonic()
        log.info("fleetd stopping")
        notifier.stopping()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        watchdog.cancel()
        for task in list(reloads):
            task.cancel()
        await asyncio.gather(watchdog, *reloads, return_exceptions=True)
        # One deadline for the whole shutdown: requests in flight, then operations and the last
        # snapshot share shutdown_grace (each stage gets what the previous left), and closing
        # sockets and the database gets CLOSE_ALLOWANCE more at most.
        grace = fleet.settings.shutdown_grace
        deadline = loop.time() + grace
        try:
            async with asyncio.timeout(grace + CLOSE_ALLOWANCE):
                await runner.cleanup()
                await fleet.aclose(grace=deadline - loop.time())
        except TimeoutError:
            log.warning("shutdown exceeded the grace period", grace=grace)
        log.info("fleetd stopped", seconds=round(time.monotonic() - started, 3))
    return 0
