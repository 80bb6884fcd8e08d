"""A lean safety-net poll by callback: sent from the host loop's timer, applied from the answer's callback.

While a host's event stream is live and synced its periodic poll only lists the containers (see
fleetd/fleet/safety_net.py). On the watcher's kept connection such a poll needs no task: the timer
that says the poll is due sends ``GET /containers/json?all=1`` (:meth:`SafetyNet.send_list`), the
connection's callback hands the answer to the host loop, which applies it as any poll's and arms the
next timer. The host's task sleeps through it all; at 1,000 hosts and a 60 s poll that is ~17 task
wake-ups a second fewer, each with its awaits on a future, a semaphore and a timeout.

Anything unusual hands the poll back to the task, which polls as always (through the client, which
then says precisely what is wrong): an exchange error or a status other than 200. No answer within
the host's timeout is a failed poll (``down``), as it would be through the client. An action (or
``stop``) wakes the task, which abandons a lean poll under way: its late answer is dropped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from fleetd.dockerapi import DockerError
from fleetd.dockerapi.exchange import Result
from fleetd.fleet.fetch import Answer, Failed
from fleetd.fleet.records import HostStatus
from fleetd.fleet.safety_net import SafetyNet

__all__ = ["Begun", "LeanOwner", "LeanPoll"]


@dataclass(frozen=True, slots=True)
class Begun:
    """What a poll notes as it is sent, to judge its answer by."""

    epoch: int  # the host's action epoch: an answer from an older one is discarded
    started: float  # time.monotonic(), for the poll's duration
    stamp: int  # the rows' ordering guard against newer event refreshes
    sent_at: float  # loop time, for the drift judgement


class LeanOwner(Protocol):
    """The host loop, as a lean poll sees it."""

    lean_poll: LeanPoll | None

    def complete(self, got: Answer | Failed, begun: Begun, net: SafetyNet) -> None: ...

    def polled_by_callback(self) -> None: ...

    def hand_to_task(self) -> None: ...


class LeanPoll:
    __slots__ = ("begun", "net", "owner", "timeout", "timer", "url")

    def __init__(self, owner: LeanOwner, net: SafetyNet, begun: Begun, timeout: float, url: str) -> None:
        self.owner = owner
        self.net = net
        self.begun = begun
        self.timeout = timeout
        self.url = url
        self.timer: asyncio.TimerHandle | None = None

    def send(self) -> bool:
        """Send the list; False when the watcher has no kept connection for it (nothing sent)."""
        if not self.net.send_list(self.answer):
            return False
        self.timer = asyncio.get_running_loop().call_later(self.timeout, self.timed_out)
        return True

    def abandon(self) -> None:
        """The task woke (an action, a stop): whatever this poll hears now is dropped."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.owner.lean_poll is self:
            self.owner.lean_poll = None

    def answer(self, result: Result) -> None:
        owner = self.owner
        if owner.lean_poll is not self:
            return  # abandoned, or timed out already
        self.abandon()
        if isinstance(result, DockerError) or result[0] != 200 or not result[1]:
            owner.hand_to_task()  # the client asks again and says precisely what is wrong
            return
        self._finish(Answer(None, None, result[1], None))

    def timed_out(self) -> None:
        self.timer = None
        if self.owner.lean_poll is not self:
            return
        self.abandon()
        self.net.cancel_list(self.answer)  # the connection stuck on it is dropped; ``answer`` ignores it
        self._finish(
            Failed(HostStatus.DOWN, f"no answer within {self.timeout:g}s to GET /containers/json on {self.url}")
        )

    def _finish(self, got: Answer | Failed) -> None:
        owner = self.owner
        try:
            owner.complete(got, self.begun, self.net)
        except Exception as exc:  # a bug here must not break the connection's other exchanges
            asyncio.get_running_loop().call_exception_handler({"message": "lean poll failed", "exception": exc})
            owner.hand_to_task()
            return
        owner.polled_by_callback()
