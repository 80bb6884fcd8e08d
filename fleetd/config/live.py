"""The settings in force, and how the last (re)load went. Replaced as a whole on reload."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from fleetd.config.model import Settings

__all__ = ["LiveConfig", "ReloadFailed", "keep_listen"]


class ReloadFailed(Exception):
    """The new configuration was rejected; the previous one stays in force."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class LiveConfig:
    """``current`` is the settings in force; ``generation`` counts accepted (re)loads."""

    def __init__(self, settings: Settings) -> None:
        self.current = settings
        self.generation = 0
        self.last_reload_ok: bool = True
        self.last_reload_success: float | None = time.time()
        self._changed = asyncio.Event()

    def accept(self, settings: Settings) -> None:
        self.current = settings
        self.generation += 1
        self.last_reload_ok = True
        self.last_reload_success = time.time()
        self._changed.set()
        self._changed = asyncio.Event()

    def reject(self) -> None:
        self.last_reload_ok = False

    async def wait_changed(self) -> Settings:
        """Wait for the next accepted reload; returns the new settings."""
        await self._changed.wait()
        return self.current


def keep_listen(new: Settings, old: Settings) -> Settings:
    """``new`` with ``old``'s listen address: a running listener cannot move."""
    return dataclasses.replace(
        new, listen_host=old.listen_host, listen_port=old.listen_port, listen_tls=old.listen_tls
    )
