"""fleetd under a real systemd (PID 1 in a container), end to end: install, start, reload, watchdog, stop.

One Debian root (tests/integration/systemd_root.py, cached under /var/cache/fleetd-test) boots in a private
dockerd with ``--network host``. ``deploy/install.sh --wheelhouse`` installs fleetd the way an operator
would; the service polls that same dockerd over loopback TCP (and, after a reload, its Unix socket), and
the test reads fleetd's API from this side of the container on a loopback port.

systemd runs with ``log-level debug`` so every sd_notify datagram it accepts is in the journal
("Got notification message from PID 123 (READY=1)"): the protocol is checked from systemd's side.

The tests run in file order and share one booted container; each one first brings the service to the
state it needs, so a failure in one does not hide the results of the next.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.integration.systemd_root import (
    SystemdContainer,
    booted,
    cached_dockerd,
    dependency_wheelhouse,
    ensure_root_tarball,
    free_loopback_port,
    skip_or_fail,
    unavailable_reason,
)

REPO = Path(__file__).resolve().parents[2]
UNIT = "fleetd.service"
CONFIG = "/etc/fleetd/fleetd.yaml"
BLOCK_FILE = "/var/lib/fleetd/block-loop"  # StateDirectory: the sandboxed service can see it
WATCHDOG_SEC = 4
HOOKS = "/usr/local/lib/fleetd-test-hooks"  # tests/integration/hooks/sitecustomize.py, copied in
# The test-only drop-in. The block-loop hook exists only in this test's environment (fleetd has no such
# switch: Python loads the hook's sitecustomize through PYTHONPATH); the short watchdog
# makes a hung loop visible within seconds, and keeps STATUS= fresh every 2 s (fleetd checks it once per
# watchdog ping). No LimitNOFILE= override is needed: the sandbox's hard open-file limit is 20,000 and
# systemd clamps the unit's LimitNOFILE=65536 to it (setrlimit_closest) instead of failing the start.
DROP_IN = f"""\
[Service]
WatchdogSec={WATCHDOG_SEC}
Environment=FLEETD_TEST_BLOCK_LOOP_FILE={BLOCK_FILE}
Environment=PYTHONPATH={HOOKS}
"""
EXPOSURE_LIMIT = 2.0
NOTIFICATION = re.compile(r"^fleetd\.service: Got notification message from PID (\d+) \((.*)\)$")
EXPOSURE = re.compile(r"Overall exposure level for fleetd\.service: (\d+\.\d+) ")

T = TypeVar("T")

# The first run on a machine builds the root with debootstrap inside the first test's set-up.
pytestmark = [pytest.mark.systemd, pytest.mark.timeout(900)]
in_container = pytest.mark.slow


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30, every: float = 0.2) -> T:
    """Call ``probe`` until it returns something other than None/False; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


@dataclass
class Service:
    """The booted container with fleetd installed, and how to reach its API from here."""

    box: SystemdContainer
    api_port: int
    docker_tcp: str  # the private dockerd's TCP endpoint, as fleetd inside the container reaches it
    docker_unix: str  # the same daemon's socket, bind-mounted into the container

    def config(self, hosts: dict[str, str]) -> str:
        lines = [
            f"listen: 127.0.0.1:{self.api_port}",
            "poll: {interval: 1s, timeout: 800ms}",
            "snapshots: {path: fleetd.db}",
            "hosts:",
            *(f"  - {{name: {name}, url: '{url}'}}" for name, url in hosts.items()),
        ]
        return "\n".join(lines) + "\n"

    def write_config(self, text: str) -> None:
        self.box.write_file(CONFIG, text, mode="0640", owner="root:fleetd")

    def show(self, *props: str) -> dict[str, str]:
        return self.box.unit_properties(UNIT, *props)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}", timeout=5) as resp:
            if path == "/metrics":
                return resp.read().decode()
            return json.load(resp)

    def api_or_none(self, path: str) -> Any:
        try:
            return self.api(path)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def hosts(self) -> dict[str, dict[str, Any]]:
        return {h["name"]: h for h in self.api("/api/v1/hosts")["hosts"]}

    def hosts_up(self, *names: str) -> dict[str, dict[str, Any]] | None:
        """The API's hosts when exactly ``names`` are listed and all up, else None."""
        listing = self.api_or_none("/api/v1/hosts")
        if listing is None:
            return None
        hosts = {h["name"]: h for h in listing["hosts"]}
        if sorted(hosts) == sorted(names) and all(h["state"] == "up" for h in hosts.values()):
            return hosts
        return None

    def notifications(self) -> list[tuple[int, str]]:
        """Every sd_notify message systemd accepted from fleetd so far, oldest first: (pid, text)."""
        found = []
        for line in self.box.journal(UNIT).splitlines():
            if m := NOTIFICATION.match(line):
                found.append((int(m.group(1)), m.group(2)))
        return found

    def ensure_running(self) -> None:
        """Bring the service to active (running) with the base config, whatever a previous test left."""
        if self.show("ActiveState")["ActiveState"] == "active":
            return
        self.box.exec("rm", "-f", BLOCK_FILE)
        self.write_config(self.config({"engine-tcp": self.docker_tcp}))
        self.box.systemctl("reset-failed", UNIT)
        self.box.systemctl("start", UNIT, check=True)
        wait_for("engine-tcp up", lambda: self.hosts_up("engine-tcp"))


def open_files(box: SystemdContainer, pid: int) -> tuple[int, int]:
    """Soft and hard RLIMIT_NOFILE of a process in the container."""
    for line in box.exec("cat", f"/proc/{pid}/limits").stdout.splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files limit for pid {pid}")


class Phases:
    """Wall-clock time of each set-up step, for the log (the set-up dominates this module's run time)."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.times: list[tuple[str, float]] = []

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times.append((name, now - self.last))
        self.last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {secs:.1f}s" for name, secs in self.times)


@pytest.fixture(scope="session")
def systemd_available() -> None:
    if reason := unavailable_reason():
        skip_or_fail(reason)


@pytest.fixture(scope="session")
def wheelhouse(systemd_available: None) -> Path:
    """The root tarball and the dependency wheels for ``install.sh --wheelhouse``, both cached per machine.

    A first run builds them side by side (debootstrap, then pip here, where the package index is set up).
    """
    with ThreadPoolExecutor(2, thread_name_prefix="systemd-prep") as pool:
        root = pool.submit(ensure_root_tarball)
        wheels = pool.submit(dependency_wheelhouse, REPO)
        root.result()
        return wheels.result()


@pytest.fixture(scope="module")
def service(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    phases = Phases()
    docker_port = free_loopback_port()
    # The daemon keeps its data root in the cache: the root image is imported once per machine.
    with cached_dockerd(tmp_path_factory.mktemp("sd"), tcp_port=docker_port) as dockerd:
        phases.done("dockerd")
        api_port = free_loopback_port()
        volumes: dict[str | Path, str] = {
            REPO: "/src:ro",
            wheelhouse: "/wh:ro",
            dockerd.socket_path: "/run/docker.sock",
        }
        with booted(dockerd.host, f"fleetd-systemd-{docker_port}", volumes=volumes) as box:
            phases.done("import + boot")
            box.exec(
                "bash", "/src/deploy/install.sh", "--source", "/src", "--wheelhouse", "/wh", "--no-start"
            )
            phases.done("install.sh")
            # The root's docker group is not this machine's: give the bind-mounted socket to the root's.
            box.exec("chgrp", "docker", "/run/docker.sock")
            box.exec("chmod", "0660", "/run/docker.sock")
            box.exec("mkdir", "-p", f"/etc/systemd/system/{UNIT}.d")
            box.write_file(f"/etc/systemd/system/{UNIT}.d/test.conf", DROP_IN)
            box.exec("mkdir", "-p", HOOKS)
            hook = (Path(__file__).parent / "hooks" / "sitecustomize.py").read_text()
            box.write_file(f"{HOOKS}/sitecustomize.py", hook)
            box.systemctl("daemon-reload", check=True)
            box.exec("systemd-analyze", "log-level", "debug")  # puts every sd_notify message in the journal
            print(f"systemd test set-up: {phases}", file=sys.stderr)
            yield Service(box, api_port, f"tcp://127.0.0.1:{docker_port}", "unix:///run/docker.sock")


@in_container
def test_unit_verifies_and_its_exposure_is_low(service: Service) -> None:
    box = service.box
    unit = f"/etc/systemd/system/{UNIT}"
    verify = box.exec("systemd-analyze", "verify", unit, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "fleetd" not in verify.stderr, verify.stderr  # no warnings about our unit either
    security = box.exec("systemd-analyze", "security", "--offline=true", unit, check=False)
    found = EXPOSURE.search(security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= EXPOSURE_LIMIT, security.stdout


@in_container
def test_start_reaches_active_only_after_ready(service: Service) -> None:
    box = service.box
    service.write_config(service.config({"engine-tcp": service.docker_tcp}))
    # Sample the unit's state and the API together, inside the container, as fast as systemctl allows.
    # Each line reads the state first and then tries the API, so "active" followed by "api=down" would
    # mean systemd reported the service up before it listened.
    script = f"""
        systemctl start --no-block {UNIT}
        for _ in $(seq 1 600); do
            state=$(systemctl show -p ActiveState,SubState,MainPID {UNIT} | sort | tr '\\n' ' ')
            if curl -sf -o /dev/null --max-time 2 http://127.0.0.1:{service.api_port}/healthz; then
                api=up; else api=down; fi
            echo "$state api=$api"
            case "$state" in *ActiveState=active\\ *|*ActiveState=failed\\ *) exit 0 ;; esac
            sleep 0.02
        done
        exit 1
    """
    started = time.monotonic()
    out = box.exec("bash", "-c", script, check=False, timeout=60)
    samples = [dict(kv.split("=", 1) for kv in line.split()) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and samples, out.stdout + out.stderr
    last = samples[-1]
    assert (last["ActiveState"], last["SubState"], last["api"]) == ("active", "running", "up"), samples
    # fleetd was running (it has a MainPID) while systemd still held the unit in "activating": it
    # waited for READY=1, not for the process to exist.
    waiting = [s for s in samples if s["ActiveState"] == "activating" and s["SubState"] == "start"]
    assert any(s["MainPID"] != "0" for s in waiting), samples
    pid = int(last["MainPID"])
    # LimitNOFILE=65536 above the sandbox's hard limit (20,000 here) is clamped to it, not an error.
    hard = open_files(box, 1)[1]
    assert open_files(box, pid) == (min(65536, hard), min(65536, hard))

    journal = box.journal(UNIT)
    ready = journal.find(f"Got notification message from PID {pid} (READY=1")
    started_line = journal.find("Started fleetd.service")
    assert 0 <= ready < started_line, journal[-3000:]
    assert 0 <= journal.find('"event": "fleetd listening"') < ready

    hosts = wait_for("engine-tcp up", lambda: service.hosts_up("engine-tcp"))
    # The only container in the private dockerd is this test's systemd container.
    assert hosts["engine-tcp"]["containers"] == 1
    wait_for(
        "STATUS with the fleet summary",
        lambda: service.show("StatusText")["StatusText"] == "1/1 hosts up, 1 containers",
        timeout=15,
    )
    assert service.show("NRestarts")["NRestarts"] == "0"
    print(f"start to active: {time.monotonic() - started:.1f}s over {len(samples)} samples")


@in_container
def test_reload_applies_a_changed_inventory(service: Service) -> None:
    service.ensure_running()
    before = service.show("MainPID", "NRestarts")
    tcp_before = service.hosts()["engine-tcp"]
    reload_started = time.time()
    service.write_config(
        service.config({"engine-tcp": service.docker_tcp, "engine-unix": service.docker_unix})
    )
    assert service.box.systemctl("reload", UNIT).returncode == 0

    # The added host comes up through the unix socket (SupplementaryGroups=docker at work).
    hosts = wait_for("both hosts up", lambda: service.hosts_up("engine-tcp", "engine-unix"))
    assert hosts["engine-unix"]["url"] == service.docker_unix
    assert hosts["engine-tcp"]["last_seen"] >= tcp_before["last_seen"]  # kept its record, never reset
    assert service.show("MainPID", "NRestarts") == before  # a reload, not a restart
    metrics = service.api("/metrics")
    assert "fleetd_config_last_reload_successful 1.0" in metrics
    stamp = re.search(r"^fleetd_config_last_reload_success_timestamp_seconds (\S+)$", metrics, re.M)
    assert stamp and float(stamp.group(1)) >= reload_started - 1, metrics
    pid = int(before["MainPID"])
    messages = [text for p, text in service.notifications() if p == pid]
    reloading = max(i for i, text in enumerate(messages) if text.startswith("RELOADING=1"))
    assert "MONOTONIC_USEC=" in messages[reloading]
    assert any(text.startswith("READY=1") for text in messages[reloading + 1 :]), messages
    wait_for(
        "unit back to active (running)",
        lambda: service.show("ActiveState", "SubState") == {"ActiveState": "active", "SubState": "running"},
    )
    wait_for("STATUS with both hosts", lambda: service.show("StatusText")["StatusText"].startswith("2/2 "))

    # A broken file is rejected: the old inventory keeps running, the metric and the journal say so.
    service.write_config("hosts:\n  - name: engine-tcp\n    url: ftp://nowhere\n")
    assert service.box.systemctl("reload", UNIT).returncode == 0
    wait_for(
        "reload failure in /metrics",
        lambda: "fleetd_config_last_reload_successful 0.0" in (service.api_or_none("/metrics") or ""),
    )
    assert sorted(service.hosts()) == ["engine-tcp", "engine-unix"]
    assert service.show("ActiveState", "SubState") == {"ActiveState": "active", "SubState": "running"}
    # Under systemd each line carries its syslog priority: -p warning keeps the error, drops info.
    warnings = service.box.journal(UNIT, "-p", "warning")
    assert "reload rejected" in warnings and f"{CONFIG}:3: hosts[0].url" in warnings, warnings
    assert "fleetd listening" not in warnings

    service.write_config(
        service.config({"engine-tcp": service.docker_tcp, "engine-unix": service.docker_unix})
    )
    assert service.box.systemctl("reload", UNIT).returncode == 0
    wait_for(
        "reload success in /metrics",
        lambda: "fleetd_config_last_reload_successful 1.0" in (service.api_or_none("/metrics") or ""),
    )


@in_container
def test_watchdog_restarts_a_hung_event_loop(service: Service) -> None:
    service.ensure_running()
    box = service.box
    before = service.show("MainPID", "NRestarts")
    hosts = sorted(service.hosts())
    box.exec("touch", BLOCK_FILE)
    # Remove the switch as soon as the loop is stuck, so the restarted fleetd runs normally.
    wait_for(
        "fleetd to block its event loop",
        lambda: "test hook: blocking the event loop on purpose" in box.journal(UNIT),
        timeout=15,
    )
    blocked = time.monotonic()
    box.exec("rm", "-f", BLOCK_FILE)

    def restarted() -> dict[str, str] | None:
        now = service.show("MainPID", "NRestarts", "ActiveState", "SubState")
        if now["NRestarts"] != str(int(before["NRestarts"]) + 1):
            return None
        return now if (now["ActiveState"], now["SubState"]) == ("active", "running") else None

    after = wait_for("a restart by the watchdog", restarted, timeout=WATCHDOG_SEC + 30)
    assert after["MainPID"] not in ("0", before["MainPID"])
    journal = box.journal(UNIT)
    assert f"Watchdog timeout (limit {WATCHDOG_SEC}s)!" in journal, journal[-3000:]
    assert "SIGABRT" in journal
    wait_for("the restarted fleetd to serve every host", lambda: service.hosts_up(*hosts))
    print(f"blocked loop to service back: {time.monotonic() - blocked:.1f}s")


@in_container
def test_stop_exits_cleanly(service: Service) -> None:
    service.ensure_running()
    pid = int(service.show("MainPID")["MainPID"])
    started = time.monotonic()
    assert service.box.systemctl("stop", UNIT).returncode == 0
    elapsed = time.monotonic() - started
    props = service.show("ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus")
    assert props == {
        "ActiveState": "inactive",
        "SubState": "dead",
        "Result": "success",
        "ExecMainCode": "1",  # CLD_EXITED: it exited by itself, not killed by a signal
        "ExecMainStatus": "0",
    }
    messages = [text for p, text in service.notifications() if p == pid]
    assert messages and messages[-1] == "STOPPING=1", messages[-5:]
    assert '"event": "fleetd stopped"' in service.box.journal(UNIT)
    assert service.api_or_none("/healthz") is None
    assert elapsed < 10, elapsed


@in_container
def test_uninstall_keeps_config_and_data(service: Service) -> None:
    box = service.box
    box.exec("bash", "/src/deploy/install.sh", "--uninstall")
    assert box.systemctl("cat", UNIT).returncode != 0
    assert box.exec("test", "-e", "/opt/fleetd", check=False).returncode != 0
    assert box.exec("test", "-f", CONFIG, check=False).returncode == 0
    assert box.exec("test", "-d", "/var/lib/fleetd", check=False).returncode == 0


def test_unit_file_exposure_offline_here() -> None:
    """The same exposure check on this machine's systemd-analyze, without any container (fast)."""
    import shutil
    import subprocess

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(REPO / "deploy" / UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = EXPOSURE.search(done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= EXPOSURE_LIMIT, done.stdout
