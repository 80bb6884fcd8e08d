"""A lab of real Engine daemons on loopback for integration tests, set up the way /work/shared/LAB.md says.

For example::

    lab = DockerLab.start()                    # d1, d2 (plain TCP + unix), tls (mutual TLS), podman
    d1 = lab.daemons["d1"]
    d1.tcp_url, d1.unix_url, d1.port, d1.pid   # "tcp://127.0.0.1:23456", "unix:///tmp/fl-…/d1/docker.sock"
    d1.docker("ps", "-a")                      # the docker CLI against that daemon
    d1.stop(); d1.start()                      # down and up again: same roots, same ports
    lab.close()                                # every daemon stopped by pid, mounts and roots removed

Every daemon has its own data root, exec root, pidfile, unix socket and TCP port below 32768, no iptables
and no bridge. Each gets the ``fleet/busybox:test`` image (imported from busybox-static) and the containers
of :data:`LAYOUT`. Daemons start in parallel; dockerd 20.10 shares /etc/docker/key.json between them, so
when that file does not exist yet the first dockerd creates it before the others start.

Observed with Debian 12's dockerd 20.10.24 and podman 4.3.1: every dockerd reports the same ``ID`` in /info
(kept across restarts); podman's compat ``/info`` answers every request with a fresh random UUID as ``ID``,
and its containers keep running while the service is down. podman's ``/info`` takes 0.5-0.8 s (``/version``
1-1.5 s), dockerd's about 10 ms. Running containers on dockerd have ``--restart unless-stopped``, so
``stop()``/``start()`` brings them back; ``--stop-timeout 1`` keeps a daemon stop at about 1-2.5 seconds.

The parts live next to this module: :mod:`lab_daemon` (one daemon), :mod:`lab_tls` (certificates),
:mod:`lab_image` (the busybox image), :mod:`lab_podman` (podman's service set-up) and :mod:`lab_os`
(ports, processes, mounts); every public name is importable from here.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.integration.lab_daemon import READY_TIMEOUT, STOP_TIMEOUT, Daemon, ExpectedContainer, Kind
from tests.integration.lab_image import BUSYBOX_IMAGE, busybox_rootfs_tar
from tests.integration.lab_os import (
    PORT_RANGE,
    LabError,
    docker_unavailable_reason,
    free_port,
    mountpoints_under,
)
from tests.integration.lab_podman import podman_unavailable_reason
from tests.integration.lab_tls import TLSPaths, make_certificates

__all__ = [
    "BUSYBOX_IMAGE",
    "LAYOUT",
    "PORT_RANGE",
    "READY_TIMEOUT",
    "STOP_TIMEOUT",
    "Daemon",
    "DockerLab",
    "ExpectedContainer",
    "Kind",
    "LabError",
    "TLSPaths",
    "busybox_rootfs_tar",
    "docker_unavailable_reason",
    "free_port",
    "make_certificates",
    "podman_unavailable_reason",
]

KEY_JSON = Path("/etc/docker/key.json")


def _c(name: str, app: str, running: bool = True) -> ExpectedContainer:
    return ExpectedContainer(name, {"app": app}, running)


#: Containers created on each daemon (all ``--network none``).
LAYOUT: Mapping[str, tuple[ExpectedContainer, ...]] = {
    "d1": (_c("web1", "web"), _c("job1", "batch", running=False)),
    "d2": (_c("web2", "web"), _c("db2", "db")),
    "tls": (_c("tls1", "web"),),
    "podman": (_c("pod1", "web"),),
}


@dataclass(eq=False)
class DockerLab:
    """All daemons of one test session; ``daemons`` is keyed by name (d1, d2, tls, podman)."""

    root: Path
    daemons: dict[str, Daemon]
    startup_seconds: float = 0.0
    podman_problem: str | None = None  # why "podman" is absent, when it is
    _closed: bool = False

    @classmethod
    def start(
        cls,
        *,
        podman: bool | None = None,
        log: Callable[[str], None] = lambda _msg: None,
    ) -> DockerLab:
        """Start d1, d2, tls and (unless ``podman=False``) podman, all in parallel.

        A podman that is missing or fails to start is left out, with the reason in ``podman_problem``;
        any other failure stops what was started and raises LabError.
        """
        if reason := docker_unavailable_reason():
            raise LabError(reason)
        started = time.monotonic()
        root = Path(tempfile.mkdtemp(prefix="fl-", dir="/tmp"))  # short: unix sockets live below it
        lab = cls(root, {})
        try:
            lab._start_all(podman, log)
        except BaseException:
            lab.close()
            raise
        lab.startup_seconds = time.monotonic() - started
        log(f"lab up in {lab.startup_seconds:.1f}s: {', '.join(lab.daemons)}")
        return lab

    def _start_all(self, podman: bool | None, log: Callable[[str], None]) -> None:
        server_tls, client_tls = make_certificates(self.root / "tls-certs")
        image = busybox_rootfs_tar()
        rng = random.Random()
        daemons = [
            Daemon(name, "docker", self.root / name, free_port(rng), {c.name: c for c in LAYOUT[name]})
            for name in ("d1", "d2", "tls")
        ]
        daemons[2].tls_paths, daemons[2].server_tls = client_tls, server_tls
        if podman is False:
            self.podman_problem = "podman not requested"
        elif (reason := podman_unavailable_reason()) is not None:
            self.podman_problem = reason
        else:
            spec = {c.name: c for c in LAYOUT["podman"]}
            daemons.append(Daemon("podman", "podman", self.root / "podman", free_port(rng), spec))
        for daemon in daemons:
            self.daemons[daemon.name] = daemon

        first_dockerd_up = threading.Event()
        if KEY_JSON.exists():
            first_dockerd_up.set()

        def bring_up(daemon: Daemon) -> None:
            if daemon.kind == "docker" and daemon is not daemons[0]:
                first_dockerd_up.wait(READY_TIMEOUT)  # the first one writes the shared key.json
            t0 = time.monotonic()
            try:
                for attempt in range(3):
                    try:
                        daemon.start()
                        break
                    except LabError as exc:  # someone bound the probed port meanwhile: take another
                        if "address already in use" not in str(exc) or attempt == 2:
                            raise
                        daemon.port = free_port()
            finally:
                if daemon is daemons[0]:
                    first_dockerd_up.set()
            daemon.populate(image)
            log(f"{daemon.name} ready in {time.monotonic() - t0:.1f}s (pid {daemon.pid}, port {daemon.port})")

        with ThreadPoolExecutor(max_workers=len(daemons)) as pool:
            futures = {daemon.name: pool.submit(bring_up, daemon) for daemon in daemons}
        failures: dict[str, BaseException] = {
            name: exc for name, future in futures.items() if (exc := future.exception()) is not None
        }
        if "podman" in failures:
            self.podman_problem = f"podman failed to start: {failures.pop('podman')}"
            for problem in self.daemons.pop("podman").destroy():
                log(problem)
        if failures:
            raise LabError("; ".join(f"{name}: {exc}" for name, exc in failures.items()))

    def close(self) -> None:
        """Stop every daemon by pid (in parallel), unmount and remove all roots. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        daemons = list(self.daemons.values())
        problems: list[str] = []
        if daemons:
            with ThreadPoolExecutor(max_workers=len(daemons)) as pool:
                for found in pool.map(Daemon.destroy, daemons):
                    problems += found
        for point in mountpoints_under(self.root):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            problems.append(f"could not remove {self.root}")
        if problems:
            raise LabError("lab teardown: " + "; ".join(problems))

    def expected_names(self) -> dict[str, set[str]]:
        return {name: set(daemon.containers) for name, daemon in self.daemons.items()}

    def docker_daemons(self) -> Sequence[Daemon]:
        return [d for d in self.daemons.values() if d.kind == "docker"]
