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
(kept across restarts); podman's ``ID`` is a fresh UUID each time its service starts, and its containers
keep running while the service is down. Running containers on dockerd have ``--restart unless-stopped``,
so ``stop()``/``start()`` brings them back; ``--stop-timeout 1`` keeps a daemon stop at about 2 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "BUSYBOX_IMAGE",
    "LAYOUT",
    "Daemon",
    "DockerLab",
    "ExpectedContainer",
    "LabError",
    "TLSPaths",
    "docker_unavailable_reason",
    "podman_unavailable_reason",
]

BUSYBOX_IMAGE = "fleet/busybox:test"
PORT_RANGE = (23000, 29999)  # below the ephemeral range (32768-60999)
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
KEY_JSON = Path("/etc/docker/key.json")
Kind = Literal["docker", "podman"]


class LabError(RuntimeError):
    """A daemon of the lab could not be started, driven or cleaned up."""


@dataclass(frozen=True, slots=True)
class ExpectedContainer:
    name: str
    labels: Mapping[str, str]
    running: bool


@dataclass(frozen=True, slots=True)
class TLSPaths:
    """Client side of mutual TLS: the CA that signed the daemon's certificate, our cert and key."""

    ca: Path
    cert: Path
    key: Path


def _c(name: str, app: str, running: bool = True) -> ExpectedContainer:
    return ExpectedContainer(name, {"app": app}, running)


#: Containers created on each daemon (all ``--network none``).
LAYOUT: Mapping[str, tuple[ExpectedContainer, ...]] = {
    "d1": (_c("web1", "web"), _c("job1", "batch", running=False)),
    "d2": (_c("web2", "web"), _c("db2", "db")),
    "tls": (_c("tls1", "web"),),
    "podman": (_c("pod1", "web"),),
}


# -- availability ---------------------------------------------------------------------------------


def docker_unavailable_reason() -> str | None:
    for tool in ("dockerd", "docker", "busybox", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (apt-get install docker.io busybox-static openssl)"
    if os.geteuid() != 0:
        return "dockerd needs root"
    return None


def podman_unavailable_reason() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not on PATH (apt-get install podman)"
    return docker_unavailable_reason()


# -- small helpers --------------------------------------------------------------------------------

_ports_taken: set[int] = set()
_ports_lock = threading.Lock()


def free_port(rng: random.Random | None = None) -> int:
    """A loopback port in PORT_RANGE that can be bound right now and was not handed out before."""
    rng = rng or random.Random()
    with _ports_lock:
        for _ in range(500):
            port = rng.randint(*PORT_RANGE)
            if port in _ports_taken:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ports_taken.add(port)
            return port
    raise LabError(f"no free port in {PORT_RANGE}")


def _busybox_is_static(path: Path) -> bool:
    """True unless the ELF file asks for a program interpreter (PT_INTERP), i.e. is dynamic."""
    with path.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # only 64-bit ELF is expected here
            return True
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def busybox_rootfs_tar() -> bytes:
    """A tar of a root with only busybox and a few applet links: the fleet/busybox:test image."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    if not _busybox_is_static(busybox):
        raise LabError(f"{busybox} is dynamically linked; install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in ("bin", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "sleep", "true", "false", "echo", "cat", "ls", "env", "ps", "kill", "hostname"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return buf.getvalue()


def make_certificates(directory: Path) -> tuple[TLSPaths, TLSPaths]:
    """A CA plus server (SAN IP:127.0.0.1, DNS:localhost) and client certificates: (server, client)."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LabError(f"openssl {' '.join(args)}: {done.stderr.strip()}")

    def key(name: str) -> None:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)
        (directory / name).chmod(0o600)

    key("ca-key.pem")
    openssl(
        "req", "-x509", "-new", "-key", "ca-key.pem", "-sha256", "-days", "7", "-subj", "/CN=fleetd test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", "ca.pem",
    )  # fmt: skip
    for role, cn, extra in (
        ("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "fleetd-test-client", "extendedKeyUsage=clientAuth\n"),
    ):
        key(f"{role}-key.pem")
        (directory / f"{role}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n" + extra
        )
        openssl("req", "-new", "-key", f"{role}-key.pem", "-subj", f"/CN={cn}", "-out", f"{role}.csr")
        openssl(
            "x509", "-req", "-in", f"{role}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-set_serial", str(random.getrandbits(63)), "-days", "7", "-sha256",
            "-extfile", f"{role}.ext", "-out", f"{role}-cert.pem",
        )  # fmt: skip
    ca = directory / "ca.pem"
    server = TLSPaths(ca, directory / "server-cert.pem", directory / "server-key.pem")
    client = TLSPaths(ca, directory / "client-cert.pem", directory / "client-key.pem")
    return server, client


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _mountpoints_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root)
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")  # \040 and friends
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def _processes_mentioning(text: str) -> set[int]:
    """Pids whose command line contains ``text`` (a unique lab path), plus all their descendants."""
    needle, me = text.encode(), os.getpid()
    parents: dict[int, int] = {}
    hits: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle in f.read():
                    hits.add(pid)
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                hits.discard(pid)  # zombies need no killing
                continue
            parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    found, grew = set(hits), True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


# -- one daemon -----------------------------------------------------------------------------------


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
            conn = _UnixHTTPConnection(str(self.unix_path), timeout)
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
            return [
                "podman", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "overlay", "--tmpdir", str(self.root / "tmp"),
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "system", "service", "--time=0", f"tcp:127.0.0.1:{self.port}",
            ]  # fmt: skip
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
            return
        for sub in ("storage", "run", "tmp"):
            (self.root / sub).mkdir(exist_ok=True)
        (self.root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root}/storage"\nrunroot = "{self.root}/run"\n'
        )
        # Without CAP_SYS_RESOURCE runc cannot raise RLIMIT_NOFILE/NPROC to podman's root defaults.
        (self.root / "containers.conf").write_text(
            '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        )
        self._env = {
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
        }

    def podman(
        self, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """The podman CLI on this daemon's storage (podman only)."""
        if self.kind != "podman":
            raise LabError(f"{self.name} is not a podman daemon")
        globals_ = self._command()[: self._command().index("system")]
        done = subprocess.run(
            [*globals_, *args], capture_output=True, text=True, timeout=timeout,
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
        while _processes_mentioning(marker) and time.monotonic() < deadline:
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
        leftovers = _processes_mentioning(f"{self.root}/")
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if leftovers:
            self._wait_gone(f"{self.root}/", 5.0)
        for point in _mountpoints_under(self.root):
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


# -- the lab --------------------------------------------------------------------------------------


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
        for point in _mountpoints_under(self.root):
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
