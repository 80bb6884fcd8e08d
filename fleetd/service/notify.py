"""sd_notify(3) without libsystemd: readiness, reload, stop, status and watchdog for ``Type=notify`` units.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by ``NOTIFY_SOCKET``.
Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op and no socket is opened.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from types import TracebackType

import structlog

__all__ = ["Notifier", "watchdog_loop"]

# Test-only: see watchdog_loop(). Does nothing unless this variable is set.
_STATUS_TICK = 5.0  # seconds between checks of the status text


def _log() -> structlog.typing.FilteringBoundLogger:
    # Looked up per use: these messages are rare, and a module-level logger cached on first use would
    # keep whatever configuration was current then (tests reconfigure logging).
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("fleetd.service.notify")
    return logger


def _parse_address(value: str | None) -> str | None:
    """``/path`` as is, ``@name`` as an abstract socket (leading NUL); anything else unsupported."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends sd_notify messages for this process; errors are logged once and never raised.

    Built from an environment mapping (default ``os.environ``) so tests can point it at their own
    socket. The socket is opened on the first send and closed by :meth:`close`.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._environ = env
        raw = env.get("NOTIFY_SOCKET")
        self._address = _parse_address(raw)
        self._unsupported = raw if raw and self._address is None else None
        self._watchdog_usec = self._parse_watchdog(env)
        self._sock: socket.socket | None = None
        self._error_logged = False

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str]) -> int | None:
        pid = env.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            return None  # the watchdog belongs to another process (e.g. our parent)
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        return usec if usec > 0 else None

    @property
    def enabled(self) -> bool:
        """True when ``NOTIFY_SOCKET`` names a socket we can send to."""
        return self._address is not None

    @property
    def environ(self) -> Mapping[str, str]:
        return self._environ

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None without a watchdog."""
        if not self.enabled or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> None:
        if status is None:
            self.send(READY=1)
        else:
            self.send(READY=1, STATUS=status)

    def reloading(self) -> None:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (required by Type=notify-reload, systemd ≥ 253).

        Send :meth:`ready` when the reload is done.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self) -> None:
        self.send(STOPPING=1)

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def watchdog(self) -> None:
        self.send(WATCHDOG=1)

    def send(self, **fields: object) -> None:
        """One datagram, one ``KEY=value`` line per field (newlines in values become spaces)."""
        lines = (f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items())
        self.send_raw("\n".join(lines))

    def send_raw(self, message: str) -> None:
        if self._address is None:
            if self._unsupported is not None and not self._error_logged:
                self._error_logged = True
                _log().warning(
                    "sd_notify disabled: unsupported NOTIFY_SOCKET", notify_socket=self._unsupported
                )
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._error_logged:
                self._error_logged = True
                _log().warning("sd_notify failed", error=str(exc), message=message.split("\n", 1)[0])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def watchdog_loop(notifier: Notifier, status: Callable[[], str] | None = None) -> None:
    """Ping the systemd watchdog from the event loop until cancelled; also keep ``STATUS=`` current.

    The pings run *in* the loop on purpose: a loop blocked for longer than ``WatchdogSec`` misses them
    and systemd restarts the service. ``status`` is polled every ``min(interval, 5 s)`` and sent when its
    text changes. With neither a watchdog nor a status source this just waits to be cancelled.
    """
    interval = notifier.watchdog_interval()
    if interval is None and (status is None or not notifier.enabled):
        await asyncio.Event().wait()
        return
    tick = min(interval, _STATUS_TICK) if interval is not None else _STATUS_TICK
    loop = asyncio.get_running_loop()
    next_ping = loop.time()
    last_status: str | None = None
    status_failed = False
    while True:
        now = loop.time()
        if interval is not None and now >= next_ping:
            notifier.watchdog()
            # Fixed rate; after a stall start afresh instead of sending a burst of late pings.
            next_ping = max(next_ping + interval, now)
        if status is not None:
            try:
                text = status()
            except Exception:
                if not status_failed:
                    status_failed = True
                    _log().exception("status callback failed")
            else:
                if text != last_status:
                    notifier.status(text)
                    last_status = text
        wake = now + tick if interval is None else min(next_ping, now + tick)
        await asyncio.sleep(max(0.0, wake - loop.time()))
