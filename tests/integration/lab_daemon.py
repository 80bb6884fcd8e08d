"""One daemon of the lab (a dockerd or a podman API service), addressable like a fleet host.

It owns its process (started and stopped by pid, never by name) and everything below its root: data
and exec roots, pidfile, unix socket, log. ``stop()``/``start()`` keep the roots, the port and the
containers, so a test can take a "host" down and bring it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.integration.lab_image import BUSYBOX_IMAGE
from tests.integration.lab_os import LabError, UnixHTTPConnection, mountpoints_under, processes_mentioning
from tests.integration.lab_podman import podman_environment, podman_global_options, podman_service_command
from tests.integration.lab_tls import TLSPaths

__all__ = ["READY_TIMEOUT", "STOP_TIMEOUT", "Daemon", "ExpectedContainer", "Kind"]

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
Kind = Literal["docker", "podman"]


@dataclass(frozen=True, slots=True)
class ExpectedContainer:
    name: str
    labels: Mapping[str, str]
    running: bool


@dataclass(eq=False)
class Daemon:
    """One dockerd (or podman service) of the lab, addressable like a fleet host."""

    name: str
    kind: Kind
    root: Path
    port: int
    containers: dict[str, ExpectedContainer]
    tls_paths: TLSPaths | None = None  # client certificates, for the mutual-TLS daemon only
    server_tls: TLSPaths | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: ``time.monotonic()`` when :meth:`stop` last saw the daemon's process exit. dockerd closes its
    #: listeners at SIGTERM but answers established keep-alive connections until it exits (1-2 s
    #: later, after stopping its containers), so this, not the SIGTERM, is when it stops answering.
    stopped_at: float | None = field(default=None, repr=False)
    _env: dict[str, str] = field(default_factory=dict, repr=False)

    # -- addresses ----------------------------------------------------------------------------

    @property
    def unix_path(self) -> Path | None:
        return self.root / "docker.sock" if self.kind == "docker" else None

    @property
    def unix_url(self) -> str | None:
        return f"unix://{self.unix_path}" if self.unix_path is not None else None

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` for the TLS daemon) for plain HTTP clients."""
        return f"{'https' if self.tls_paths else 'http'}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    @property
    def pid(self) -> int:
        if self._process is None or self._process.poll() is not None:
            raise LabError(f"{self.name} is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the lab CA and presenting the client certificate."""
        if self.tls_paths is None:
            raise LabError(f"{self.name} does not serve TLS")
        context = ssl.create_default_context(cafile=str(self.tls_paths.ca))
        context.load_cert_chain(str(self.tls_paths.cert), str(self.tls_paths.key))
        return context

    # -- talking to it ------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """One API call, synchronously, over the unix socket when there is one. Returns (status, JSON)."""
        conn: http.client.HTTPConnection
        if self.unix_path is not None:
            conn = UnixHTTPConnection(str(self.unix_path), timeout)
        elif self.tls_paths is not None:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=self.ssl_context()
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            status, body = self.request("GET", "/_ping", timeout=timeout)
        except OSError:
            return False
        return status == 200 and body == "OK"

    def docker_args(self, tcp: bool = False) -> list[str]:
        """``docker`` plus the global options that point it at this daemon."""
        if self.unix_url is not None and not tcp:
            return ["docker", "-H", self.unix_url]
        args = ["docker", "-H", self.tcp_url]
        if self.tls_paths is not None:
            t = self.tls_paths
            args += ["--tlsverify", f"--tlscacert={t.ca}", f"--tlscert={t.cert}", f"--tlskey={t.key}"]
        return args

    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.root.parent / "docker-cli")
        return env

    def docker(
        self,
        *args: str,
        check: bool = True,
        input: bytes | str | None = None,
        timeout: float = 120.0,
        tcp: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this daemon; raises LabError on failure when ``check``."""
        data = input.encode() if isinstance(input, str) else input
        done = subprocess.run(
            [*self.docker_args(tcp), *args], input=data, capture_output=True, timeout=timeout,
            env=self.cli_env(), check=False,
        )  # fmt: skip
        result = subprocess.CompletedProcess(
            done.args,
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )
        if check and done.returncode != 0:
            raise LabError(
                f"{self.name}: docker {' '.join(args)} failed ({done.returncode}): {result.stderr.strip()}"
            )
        return result

    async def adocker(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """:meth:`docker` without blocking the event loop."""
        return await asyncio.to_thread(self.docker, *args, check=check, timeout=timeout)

    # -- lifecycle ----------------------------------------------------------------------------

    def _command(self) -> list[str]:
        if self.kind == "podman":
            return podman_service_command(self.root, self.port)
        command = [
            "dockerd", "--config-file", str(self.root / "daemon.json"),
            "--host", f"unix://{self.unix_path}", "--host", f"tcp://127.0.0.1:{self.port}",
            "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "docker.pid"), "--iptables=false", "--bridge=none",
        ]  # fmt: skip
        if self.server_tls is not None:
            s = self.server_tls
            command += ["--tlsverify", f"--tlscacert={s.ca}", f"--tlscert={s.cert}", f"--tlskey={s.key}"]
        return command

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.kind == "docker":
            (self.root / "daemon.json").write_text("{}\n")  # not /etc/docker/daemon.json
        else:
            self._env = podman_environment(self.root)

    def podman(
        self, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """The podman CLI on this daemon's storage (podman only)."""
        if self.kind != "podman":
            raise LabError(f"{self.name} is not a podman daemon")
        done = subprocess.run(
            [*podman_global_options(self.root), *args], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **self._env}, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise LabError(f"{self.name}: podman {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the daemon (again) with the same roots and port; returns once it answers /_ping."""
        if self.running:
            raise LabError(f"{self.name} is already running (pid {self.pid})")
        self._prepare()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **self._env}, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.ping(timeout=1.0):
            if self._process.poll() is not None:
                self._process.wait()
                raise LabError(f"{self.name} exited with {self._process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self._kill()
                raise LabError(f"{self.name} did not answer /_ping within {timeout:.0f}s: {self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM by pid, SIGKILL after ``timeout``; waits until the daemon (and its containerd) exited."""
        process = self._process
        if process is None or process.poll() is not None:
            if process is not None:
                process.wait()
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.stopped_at = time.monotonic()
        if self.kind == "docker":  # its containerd goes down with it; wait so a restart finds the socket free
            self._wait_gone(f"{self.root / 'exec'}/", 10.0)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[Daemon]:
        """``async with daemon.outage():`` the daemon is down inside the block and up again after it."""
        await self.astop()
        try:
            yield self
        finally:
            await self.astart()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait_gone(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while processes_mentioning(marker) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()

    def destroy(self) -> list[str]:
        """Stop for good: daemon, leftover shims/conmons and their containers, mounts, the root."""
        problems: list[str] = []
        if self.kind == "podman" and self.running:
            with contextlib.suppress(LabError, subprocess.TimeoutExpired):
                self.podman("rm", "--force", "--all", "--time", "0")
        try:
            self.stop()
        except Exception as exc:  # keep cleaning up whatever else is there
            problems.append(f"{self.name}: stop: {exc}")
        leftovers = processes_mentioning(f"{self.root}/")
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if leftovers:
            self._wait_gone(f"{self.root}/", 5.0)
        for point in mountpoints_under(self.root):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
        for attempt in range(3):
            try:
                shutil.rmtree(self.root)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if attempt == 2:
                    problems.append(f"{self.name}: could not remove {self.root}: {exc}")
                time.sleep(0.3)
        return problems

    # -- content ------------------------------------------------------------------------------

    def populate(self, image_tar: bytes) -> None:
        """Import the busybox image and create this daemon's expected containers."""
        self.docker("import", "-", BUSYBOX_IMAGE, input=image_tar, tcp=self.kind == "podman")
        for spec in self.containers.values():
            labels = [arg for k, v in spec.labels.items() for arg in ("--label", f"{k}={v}")]
            options = ["--name", spec.name, "--network", "none", "--stop-timeout", "1", *labels]
            if spec.running:
                restart = ["--restart", "unless-stopped"] if self.kind == "docker" else []
                self.docker("run", "--detach", *options, *restart, BUSYBOX_IMAGE, "sleep", "1000000")
            else:
                self.docker("run", *options, BUSYBOX_IMAGE, "true")
