from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fleetd.service.notify import Notifier, watchdog_loop


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "AF_UNIX path too long for this tmp_path"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram queued so far, without waiting."""
    out: list[bytes] = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(2)


def test_exact_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    with Notifier({"NOTIFY_SOCKET": path}) as n:
        assert n.enabled
        n.ready()
        assert sock.recv(4096) == b"READY=1"
        n.ready(status="serving 3 hosts")
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving 3 hosts"
        n.status("polling 12 hosts, 2 down")
        assert sock.recv(4096) == b"STATUS=polling 12 hosts, 2 down"
        n.status("two\nlines")
        assert sock.recv(4096) == b"STATUS=two lines"
        n.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        n.send(EXTEND_TIMEOUT_USEC=5000000)
        assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=5000000"
        n.send_raw("ERRNO=2")
        assert sock.recv(4096) == b"ERRNO=2"


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    with Notifier({"NOTIFY_SOCKET": path}) as n:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        n.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_abstract_socket_names() -> None:
    name = f"fleetd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        with Notifier({"NOTIFY_SOCKET": "@" + name}) as n:
            n.ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_unset_notify_socket_sends_nothing_and_opens_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_socket(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket, "socket", no_socket)
    n = Notifier({"WATCHDOG_USEC": "200000"})
    with capture_logs() as logs:
        assert not n.enabled
        assert n.watchdog_interval() is None
        n.ready()
        n.reloading()
        n.status("x")
        n.watchdog()
        n.stopping()
        n.close()
    assert logs == []


def test_default_environ_is_os_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().enabled
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "x.sock"))
    assert Notifier().enabled


def test_send_errors_are_logged_once_never_raised(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with capture_logs() as logs:
        n.ready()
        n.watchdog()
        n.stopping()
    n.close()
    assert [entry["event"] for entry in logs] == ["sd_notify failed"]
    assert logs[0]["log_level"] == "warning"


def test_unsupported_address_disables_and_warns_once() -> None:
    n = Notifier({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "1000000"})
    with capture_logs() as logs:
        n.ready()
        n.ready()
    assert not n.enabled and n.watchdog_interval() is None
    assert [entry["event"] for entry in logs] == ["sd_notify disabled: unsupported NOTIFY_SOCKET"]


def test_close_is_idempotent_and_send_reopens(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    n.close()
    n.ready()
    n.close()
    n.close()
    n.stopping()
    n.close()
    assert drain(sock) == [b"READY=1", b"STOPPING=1"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(tmp_path: Path, env: dict[str, str], expected: float | None) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "s"), **env})
    assert n.watchdog_interval() == expected


async def run_for(seconds: float, notifier: Notifier, **kwargs: object) -> None:
    task = asyncio.create_task(watchdog_loop(notifier, **kwargs))  # type: ignore[arg-type]
    await asyncio.sleep(seconds)
    assert not task.done(), task
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_watchdog_cadence(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    with Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}) as n:
        await run_for(0.55, n)
    pings = drain(sock)
    assert set(pings) == {b"WATCHDOG=1"}
    assert 4 <= len(pings) <= 7, len(pings)


async def test_watchdog_of_another_pid_sends_no_pings(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}
    with Notifier(env) as n:
        await run_for(0.35, n)
    assert drain(sock) == []


async def test_status_sent_when_it_changes(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    texts = iter(["starting", "starting", "3 hosts up", "3 hosts up", "3 hosts up", "2 up, 1 down"])
    last = "2 up, 1 down"

    def status() -> str:
        return next(texts, last)

    with Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}) as n:
        await run_for(0.6, n, status=status)
    got = drain(sock)
    assert [m for m in got if m.startswith(b"STATUS=")] == [
        b"STATUS=starting",
        b"STATUS=3 hosts up",
        b"STATUS=2 up, 1 down",
    ]
    assert got.count(b"WATCHDOG=1") >= 5


async def test_failing_status_callback_does_not_stop_the_pings(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener

    def status() -> str:
        raise RuntimeError("state not ready")

    with capture_logs() as logs, Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}) as n:
        await run_for(0.35, n, status=status)
    assert drain(sock).count(b"WATCHDOG=1") >= 3
    assert [entry["event"] for entry in logs] == ["status callback failed"]


async def test_nothing_to_do_waits_until_cancelled() -> None:
    await run_for(0.05, Notifier({}), status=lambda: "x")


HOOKS = Path(__file__).resolve().parents[1] / "integration" / "hooks"


async def test_the_systemd_tests_block_loop_hook_stops_a_running_loop(tmp_path: Path) -> None:
    """fleetd has no block-the-loop switch; the systemd test's sitecustomize hook (on PYTHONPATH) does it."""
    flag = tmp_path / "block"
    program = (
        "import asyncio\n"
        "async def main():\n"
        "    while True:\n"
        "        print('tick', flush=True)\n"
        "        await asyncio.sleep(0.05)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(HOOKS), "FLEETD_TEST_BLOCK_LOOP_FILE": str(flag)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", program, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"tick\n"  # the loop runs
        flag.touch()
        line = await asyncio.wait_for(proc.stderr.readline(), 10)
        assert b"blocking the event loop on purpose" in line
        ticks = 0  # a running loop would print ~20 in the next second; a blocked one none after the hook
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while await proc.stdout.readline():
                    ticks += 1
        assert ticks <= 5 and proc.returncode is None  # alive, but its loop no longer runs
    finally:
        proc.kill()
        await proc.wait()
