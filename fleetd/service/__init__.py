"""Running fleetd as a service: systemd notification and watchdog (``notify``)."""

from __future__ import annotations

from fleetd.service.notify import Notifier, watchdog_loop

__all__ = ["Notifier", "watchdog_loop"]
