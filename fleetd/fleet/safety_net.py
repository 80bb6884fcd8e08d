"""What a host's periodic poll asks of its event watcher: with a healthy event stream the poll is only
the safety net, and it can leave out what events and the watcher already keep fresh.

A *lean* poll lists the containers alone (``GET /containers/json?all=1``, on the watcher's kept
connection when it has one), compares them with the rows as usual (drift is still counted), and
keeps the host's engine facts (``/info``) as they were. A poll is lean only while the watcher says
its stream is live and synced; ``/info`` is still asked on every poll that lists images
(``poll.images_every``), on the first poll after the stream (re)connects, and after the daemon
reports a reload. Those full polls, while the stream is healthy, go one request after the other over
the watcher's kept connection as well (:func:`~fleetd.fleet.fetch.fetch_kept`): polls a minute or more
apart would otherwise open new pooled connections each time (theirs idle out in between).

A lean poll on the kept connection needs no task at all (:mod:`fleetd.fleet.lean_poll`): the host
loop's timer sends it (:meth:`SafetyNet.send_list`) and the answer's callback applies it, so a
safety-net poll costs no wake-up of the host's task; anything unusual (no kept connection yet, an
error, a status other than 200) hands the poll back to the task, which asks through the client.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from fleetd.dockerapi import ImageSummary, SystemInfo
from fleetd.dockerapi.exchange import Done

__all__ = ["SafetyNet"]


class SafetyNet(Protocol):
    def lean(self) -> bool:
        """True while the event stream is live and synced: a poll may leave ``/info`` out."""
        ...

    async def list_body(self, timeout: float) -> bytes:
        """``GET /containers/json?all=1`` undecoded."""
        ...

    async def info_raw(self, timeout: float) -> tuple[SystemInfo, msgspec.Raw]:
        """``GET /info``, typed and verbatim (a full poll while the stream is healthy)."""
        ...

    async def images(self, timeout: float) -> list[ImageSummary]:
        """``GET /images/json``."""
        ...

    def send_list(self, done: Done) -> bool:
        """Send ``GET /containers/json?all=1`` on the kept connection, ``done`` hearing the answer;
        False (nothing sent) without a kept connection or before the API version is known."""
        ...

    def cancel_list(self, done: Done) -> None:
        """The list sent with ``done`` got no answer in time (the connection stuck on it is dropped)."""
        ...

    def answered(self) -> None:
        """A poll of the host answered (a sign of life: no liveness ping is needed for a while)."""
        ...
