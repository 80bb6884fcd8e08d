"""The sd_notify protocol of ``fleetd run`` as a process, received on a real AF_UNIX datagram socket.

The test plays systemd: it binds the socket, passes it as ``NOTIFY_SOCKET`` with ``WATCHDOG_USEC``, and
records every datagram with its arrival time. Hosts are fake Engines: one answers, one hangs, so READY=1
must not wait for slow hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes import FakeEngines, Fault

WATCHDOG_USEC = 600_000  # pings expected every 0.3 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Linux <asm-generic/socket.h>: kernel receive timestamps as struct timespec (Python does not name these).
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@qq")


@dataclass
class Message:
    at: float  # when the kernel queued the datagram (CLOCK_REALTIME), unaffected by this test's own lag
    fields: dict[str, str]
    raw: str


@dataclass
class NotifySocket:
    """systemd's side of the protocol: a bound datagram socket and every message received so far."""

    sock: socket.socket
    path: Path
    messages: list[Message] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on_readable(self) -> None:
        while True:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(TIMESPEC.size))
            except BlockingIOError:
                return
            at = time.time()
            for level, kind, payload in ancdata:
                if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS):
                    sec, nsec = TIMESPEC.unpack(payload[: TIMESPEC.size])
                    at = sec + nsec / 1e9
            raw = data.decode()
            pairs = (line.partition("=") for line in raw.split("\n") if line)
            self.messages.append(Message(at, {k: v for k, _, v in pairs}, raw))
            self.arrived.set()

    async def next_with(self, key: str, after: int = 0, timeout: float = 15) -> int:
        """Index of the first message at or after ``after`` that carries ``key``; waits for it."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if key in self.messages[i].fields:
                    return i
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no {key} within {timeout}s; got {[m.raw for m in self.messages[after:]]}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    def since(self, index: int) -> list[Message]:
        return self.messages[index:]

    async def status_becomes(self, text: str, after: int) -> int:
        index = await self.next_with("STATUS", after)
        while self.messages[index].fields["STATUS"] != text:
            index = await self.next_with("STATUS", index + 1)
        return index


@pytest.fixture
async def notify_socket(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    path = tmp_path / "notify.sock"
    if len(str(path)) >= 100:  # sun_path holds 108 bytes
        path = Path(tempfile.mkdtemp(prefix="fleetd-notify-")) / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(str(path))
    listener = NotifySocket(sock, path)
    loop = asyncio.get_running_loop()
    loop.add_reader(sock, listener.on_readable)
    try:
        yield listener
    finally:
        loop.remove_reader(sock)
        sock.close()
        path.unlink(missing_ok=True)


async def connects(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_ready_status_watchdog_reload_and_stop(
    tmp_path: Path, fake_engine: FakeEngines, notify_socket: NotifySocket
) -> None:
    good = await fake_engine(containers=3)
    hung = await fake_engine(containers=1)
    hung.behaviour.faults["*"] = Fault.HANG
    port = free_port()
    cfg = tmp_path / "fleetd.yaml"

    def write(hosts: dict[str, str]) -> None:
        cfg.write_text(
            f"listen: 127.0.0.1:{port}\n"
            "poll: {interval: 2s, timeout: 1500ms}\n"
            "snapshots: {enabled: false}\n"
            "hosts:\n" + "".join(f"  - {{name: {n}, url: '{u}'}}\n" for n, u in hosts.items())
        )

    write({"good": good.url, "hung": hung.url})
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "JOURNAL_STREAM")}
    env |= {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    log = tmp_path / "fleetd.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetd", "run", "--config", str(cfg),
            env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        ready = await notify_socket.next_with("READY")
        # READY=1 comes once the API listens: a connection made as soon as it arrives is accepted,
        # while the hung host has not answered yet (READY never waits for hosts).
        assert await connects(port)
        assert notify_socket.messages[ready].raw == "READY=1"
        assert all("STATUS" not in m.fields for m in notify_socket.messages[:ready])
        first_status = notify_socket.messages[await notify_socket.next_with("STATUS", ready)]
        # The good host may have answered already by then; the hung one cannot have.
        assert first_status.fields["STATUS"] in ("0/2 hosts up, 0 containers", "1/2 hosts up, 3 containers")
        # STATUS follows the fleet: the good host comes up, the hung one never does.
        await notify_socket.status_becomes("1/2 hosts up, 3 containers", ready)

        # WATCHDOG=1 every WATCHDOG_USEC/2, from the event loop, for as long as it runs.
        await asyncio.sleep(2.0)
        pings = [m.at for m in notify_socket.since(ready) if m.raw == "WATCHDOG=1"]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        half = WATCHDOG_USEC / 2 / 1e6
        assert len(pings) >= 6, pings
        assert abs(statistics.median(gaps) - half) < 0.05, gaps
        assert max(gaps) < WATCHDOG_USEC / 1e6, gaps  # never late enough to trip the watchdog

        # SIGHUP: RELOADING=1 (with MONOTONIC_USEC) then READY=1 once the new inventory is in force.
        write({"good": good.url})
        mark = len(notify_socket.messages)
        hup_sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        proc.send_signal(signal.SIGHUP)
        reloading = await notify_socket.next_with("RELOADING", mark)
        assert notify_socket.messages[reloading].fields["RELOADING"] == "1"
        assert int(notify_socket.messages[reloading].fields["MONOTONIC_USEC"]) >= hup_sent
        reready = await notify_socket.next_with("READY", reloading)
        assert notify_socket.messages[reready].raw == "READY=1"
        await notify_socket.status_becomes("1/1 hosts up, 3 containers", reready)

        # A broken file: still RELOADING=1 ... READY=1, and the process keeps serving.
        cfg.write_text("hosts: [\n")
        mark = len(notify_socket.messages)
        proc.send_signal(signal.SIGHUP)
        reloading = await notify_socket.next_with("RELOADING", mark)
        await notify_socket.next_with("READY", reloading)
        assert proc.returncode is None and await connects(port)

        # SIGTERM: STOPPING=1 is the last word, then a clean exit.
        mark = len(notify_socket.messages)
        proc.send_signal(signal.SIGTERM)
        stopping = await notify_socket.next_with("STOPPING", mark)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        await asyncio.sleep(0.05)  # anything sent after STOPPING would have arrived by now
        assert [m.raw for m in notify_socket.since(stopping)] == ["STOPPING=1"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "reload rejected" in text
