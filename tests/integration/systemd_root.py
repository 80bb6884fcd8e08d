"""A Debian root with systemd as PID 1, for end-to-end tests of the fleetd service unit.

Built once per machine with debootstrap and cached outside the repository as a tarball keyed by a hash of
everything that goes into it; imported into a test dockerd as ``fleet/debian-systemd:test`` and booted the
way /work/shared/LAB.md describes (SYS_ADMIN, unconfined seccomp/apparmor, tmpfs /run, cgroupfs read-only).

Typical use from a test::

    tarball = ensure_root_tarball()                       # about a minute the first time, then cached
    wheels = dependency_wheelhouse(REPO)                  # pip inside the root has no network trust set up
    with cached_dockerd(tmp_path / "d") as dockerd:         # a private daemon, stopped by pid
        import_image(dockerd.host, tarball)
        volumes = {REPO: "/src:ro", wheels: "/wh:ro", dockerd.socket_path: "/run/docker.sock"}
        with SystemdContainer.start(dockerd.host, "sysd", volumes=volumes) as box:
            box.wait_running()
            box.exec("bash", "/src/deploy/install.sh", "--source", "/src", "--wheelhouse", "/wh")
            box.exec("chgrp", "docker", "/run/docker.sock")  # the root's docker gid is not the host's

Installing inside the root goes through ``--wheelhouse``: the wheels are built on the host, whose pip is
configured for this machine's network, so the container itself needs no package index. The tarball, the
dependency wheels and (with :func:`cached_dockerd`) the imported image are all cached under
``/var/cache/fleetd-test``, so after the first run a test pays only for booting and installing.

Command-line (build the cache ahead of time): ``python tests/integration/systemd_root.py [--rebuild]``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NoReturn

__all__ = [
    "IMAGE",
    "PACKAGES",
    "REQUIRE_DOCKER",
    "SUITE",
    "Dockerd",
    "SystemdContainer",
    "booted",
    "build_wheelhouse",
    "cache_dir",
    "cached_dockerd",
    "debian_mirror",
    "dependency_wheelhouse",
    "ensure_root_tarball",
    "free_loopback_port",
    "import_image",
    "root_key",
    "skip_or_fail",
    "unavailable_reason",
]

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "python3-pip",
    "curl",
    "ca-certificates",
    "procps",  # /bin/kill, which the unit's ExecReload= uses (minbase leaves it out)
)
IMAGE = "fleet/debian-systemd:test"
KEY_LABEL = "org.fleetd.test.root-key"
# Bump when _finish_root() changes what ends up in the tarball.
_RECIPE_VERSION = 1

_DEFAULT_CACHE = Path("/var/cache/fleetd-test")
# CI sets this: a test that needs dockerd (or this root) fails instead of skipping when it is missing.
REQUIRE_DOCKER = "FLEETD_REQUIRE_DOCKER"


def cache_dir() -> Path:
    """Where the tarball lives; ``FLEETD_TEST_CACHE`` overrides ``/var/cache/fleetd-test``."""
    return Path(os.environ.get("FLEETD_TEST_CACHE", str(_DEFAULT_CACHE)))


def root_key() -> str:
    """Short hash of the recipe: suite, variant, package list, finishing steps."""
    recipe = {"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES), "recipe": _RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def tarball_path(directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / f"debian-systemd-{SUITE}-{root_key()}.tar"


def unavailable_reason() -> str | None:
    """Why the systemd root cannot be built or run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, dockerd)"
    for tool in ("dockerd", "docker"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not tarball_path().exists() and shutil.which("debootstrap") is None:
        return "debootstrap not installed and no cached root"
    return None


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the calling test with ``reason``, or fail it when ``FLEETD_REQUIRE_DOCKER`` is set."""
    import pytest  # only tests call this; the module also runs as a script without pytest

    if os.environ.get(REQUIRE_DOCKER, "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (failing instead of skipping because {REQUIRE_DOCKER}=1)", pytrace=False)
    pytest.skip(reason)


def free_loopback_port(low: int = 30000, high: int = 32000) -> int:
    """A port in [low, high) that 127.0.0.1 can bind right now.

    Fixed ranges stay below 32768, where Linux hands out ephemeral ports, and away from the docker lab's
    23000-29999. For a listener in *another* process (a daemon, or a container on the host network), so a
    race with someone else is possible but unlikely.
    """
    for port in random.sample(range(low, high), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in [{low}, {high})")


_SOURCES_LIST = Path("/etc/apt/sources.list")
_SOURCES_DIR = Path("/etc/apt/sources.list.d")


def debian_mirror(
    sources_list: Path = _SOURCES_LIST, sources_dir: Path = _SOURCES_DIR, suite: str = SUITE
) -> str | None:
    """The Debian mirror this machine's apt already uses for ``suite``, or None (debootstrap's default).

    Read at run time so no mirror address is written down in the repository; security and other
    non-main archives are skipped.
    """
    candidates: list[tuple[str, list[str]]] = []
    if sources_list.exists():
        for line in sources_list.read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 3 and parts[0] == "deb":
                uri_idx = 2 if parts[1].startswith("[") else 1
                if uri_idx + 1 < len(parts):
                    candidates.append((parts[uri_idx], [parts[uri_idx + 1]]))
    if sources_dir.is_dir():
        for path in sorted(sources_dir.glob("*.sources")):
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
                if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    candidates.append((uri, fields.get("suites", "").split()))
    for uri, suites in candidates:
        if suite in suites and "security" not in uri:
            return uri
    return None


def _run(
    argv: Sequence[str], *, log: Path | None = None, check: bool = True, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    if log is None:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        return done
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        return subprocess.run(
            list(argv), check=check, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )


def _finish_root(root: Path) -> None:
    """Small changes that make the root boot quietly in a container and keep it small."""
    (root / "etc/hostname").write_text("fleetd-systemd-test\n")
    # Empty machine-id: systemd generates one per boot instead of every container sharing one.
    (root / "etc/machine-id").write_text("")
    with contextlib.suppress(FileNotFoundError):
        (root / "var/lib/dbus/machine-id").unlink()
    # Units that cannot work in a container and would only turn the system "degraded".
    wants = root / "etc/systemd/system"
    for unit in ("systemd-remount-fs.service", "getty@tty1.service", "console-getty.service"):
        mask = wants / unit
        if not mask.exists():
            mask.symlink_to("/dev/null")
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (root / sub).glob("*"):
            if item.is_file():
                item.unlink()


def ensure_root_tarball(
    *, rebuild: bool = False, directory: Path | None = None, timeout: float = 1800
) -> Path:
    """Return the cached root tarball, building it first if needed (root, network to a Debian mirror).

    Concurrent callers serialise on a lock file; the tarball appears atomically (rename), so a crash
    mid-build leaves no half-written cache behind. The build log is kept next to the tarball.
    """
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = tarball_path(directory)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and not rebuild:
            return target
        log = target.with_suffix(".log")
        log.write_text("")
        with tempfile.TemporaryDirectory(dir=directory, prefix="build-") as tmp:
            root = Path(tmp) / "root"
            argv = [
                "debootstrap",
                f"--variant={VARIANT}",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
            ]
            mirror = debian_mirror()
            if mirror:
                argv.append(mirror)
            try:
                _run(argv, log=log, timeout=timeout)
            except subprocess.CalledProcessError as exc:
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"debootstrap failed ({exc.returncode}); log {log}:\n{tail}") from exc
            _finish_root(root)
            partial = target.with_suffix(".tar.part")
            _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], log=log)
            partial.rename(target)
        for stale in directory.glob(f"debian-systemd-{SUITE}-*.tar"):
            if stale != target:
                stale.unlink()
                stale.with_suffix(".log").unlink(missing_ok=True)
    return target


_NOT_SOURCE = (".git", ".venv", "build", "__pycache__", "*.egg-info", ".*_cache")


def build_wheelhouse(source: Path, dest: Path) -> Path:
    """Wheels for fleetd (from a copy of ``source``), its dependencies and its build backend, in ``dest``.

    For ``install.sh --wheelhouse``: pip runs here, with this machine's index and certificate settings.
    The copy keeps the build from leaving ``build/`` and ``*.egg-info`` in the work tree.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fleetd-src-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(*_NOT_SOURCE), symlinks=True)
        _run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
             "--wheel-dir", str(dest), str(copy), "setuptools", "wheel"],
            timeout=900,
        )  # fmt: skip
    return dest


def _install_requirements(source: Path) -> list[str]:
    """What ``pip install SOURCE`` needs besides SOURCE: its dependencies and its build backend."""
    with (source / "pyproject.toml").open("rb") as fh:
        meta = tomllib.load(fh)
    return sorted({*meta["project"]["dependencies"], *meta["build-system"]["requires"], "wheel"})


def dependency_wheelhouse(source: Path, directory: Path | None = None) -> Path:
    """A cached wheelhouse with everything ``install.sh --wheelhouse`` needs except fleetd itself.

    install.sh builds fleetd from its source tree, so only the dependencies and the build backend must be
    wheels. Keyed by those requirements and this Python's version and machine (the root's Python 3.11 takes
    the same cp311 manylinux wheels), so it is built once per machine and again when pyproject.toml's
    requirements change. Built into a temporary directory and renamed, under the cache lock.
    """
    requirements = _install_requirements(source)
    recipe = {
        "requirements": requirements,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "machine": os.uname().machine,
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"wheelhouse-{key}"
    # Its own lock: a first run builds this while ensure_root_tarball() runs debootstrap.
    with (directory / ".wheelhouse.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():
            return target
        tmp = Path(tempfile.mkdtemp(dir=directory, prefix="wheelhouse-build-"))
        try:
            _run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                 "--wheel-dir", str(tmp), *requirements],
                timeout=900,
            )  # fmt: skip
            tmp.chmod(0o755)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for stale in directory.glob("wheelhouse-*"):
            if stale != target and not stale.name.startswith("wheelhouse-build-"):
                shutil.rmtree(stale, ignore_errors=True)
    return target


def _docker(
    host: str, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return _run(["docker", "-H", host, *args], check=check, timeout=timeout)


def import_image(docker_host: str, tarball: Path | None = None, tag: str = IMAGE) -> str:
    """Import the root into the daemon at ``docker_host`` as ``tag`` unless already there; returns the id."""
    tarball = tarball or ensure_root_tarball()
    key = tarball.stem.rsplit("-", 1)[-1]
    found = _docker(
        docker_host, "image", "inspect", "--format", "{{.Id}} {{json .Config.Labels}}", tag, check=False
    )
    if found.returncode == 0:
        image_id, _, labels = found.stdout.strip().partition(" ")
        if (json.loads(labels) or {}).get(KEY_LABEL) == key:
            return image_id
    done = _docker(
        docker_host,
        "import",
        "--change",
        f"LABEL {KEY_LABEL}={key}",
        "--change",
        'CMD ["/sbin/init"]',
        str(tarball),
        tag,
        timeout=600,
    )
    return done.stdout.strip()


@dataclass
class Dockerd:
    """A private dockerd (LAB.md recipe): own roots, pidfile and socket, no bridge, no iptables.

    ``data_root`` (images, containers) defaults to ``root/data`` and is deleted with ``root``; one given
    explicitly is kept, so a cached image survives (see :func:`cached_dockerd`).
    """

    root: Path
    process: subprocess.Popen[bytes]
    tcp_port: int | None = None
    data_root: Path | None = None

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    @classmethod
    def start(
        cls, root: Path, *, tcp_port: int | None = None, data_root: Path | None = None, timeout: float = 60
    ) -> Dockerd:
        """Start dockerd under ``root``; ``tcp_port`` (below 32768, loopback only) is optional."""
        root.mkdir(parents=True, exist_ok=True)
        argv = [
            "dockerd",
            "--host",
            f"unix://{root / 'docker.sock'}",
            "--data-root",
            str(data_root or root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--pidfile",
            str(root / "docker.pid"),
            "--iptables=false",
            "--bridge=none",
        ]
        if tcp_port is not None:
            argv += ["--host", f"tcp://127.0.0.1:{tcp_port}"]
        with (root / "log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        daemon = cls(root=root, process=proc, tcp_port=tcp_port, data_root=data_root)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {proc.returncode}; log {root / 'log'}")
            if _docker(daemon.host, "version", check=False, timeout=10).returncode == 0:
                return daemon
            if time.monotonic() > deadline:
                daemon.stop()
                raise TimeoutError(f"dockerd did not answer within {timeout}s; log {root / 'log'}")
            time.sleep(0.3)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM by pid, SIGKILL after ``timeout``; safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def remove(self) -> None:
        """Stop, unmount what dockerd left behind, delete ``root`` (and the data root unless it was given)."""
        self.stop()
        # dockerd leaves mounts behind (exec/netns/default, sometimes data/); deepest first.
        prefixes = [str(self.root.resolve()) + "/"]
        if self.data_root is not None:
            prefixes.append(str(self.data_root.resolve()) + "/")
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts]
        for point in sorted((p for p in points if p.startswith(tuple(prefixes))), key=len, reverse=True):
            _run(["umount", "-l", point], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dockerd:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


@contextlib.contextmanager
def cached_dockerd(root: Path, *, tcp_port: int | None = None) -> Iterator[Dockerd]:
    """A private dockerd whose data root lives in the cache, so the imported root image is kept.

    Importing the 200 MB root costs 5-15 s; with the cached data root it happens once per machine. One
    session at a time owns the cached data root (a lock file); a concurrent one gets a fresh data root
    under ``root``. Containers left over from an interrupted run are removed first; a data root dockerd
    cannot start from is wiped and started afresh.
    """
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "dockerd-data.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with Dockerd.start(root, tcp_port=tcp_port) as daemon:
                yield daemon
            return
        data_root = directory / "dockerd-data"
        try:
            daemon = Dockerd.start(root, tcp_port=tcp_port, data_root=data_root)
        except (RuntimeError, TimeoutError):
            shutil.rmtree(data_root, ignore_errors=True)
            daemon = Dockerd.start(root, tcp_port=tcp_port, data_root=data_root)
        with daemon:
            leftovers = _docker(daemon.host, "ps", "-aq").stdout.split()
            if leftovers:
                _docker(daemon.host, "rm", "-f", *leftovers)
            yield daemon


@dataclass
class SystemdContainer:
    """A container running /sbin/init from the systemd root."""

    docker_host: str
    name: str
    container_id: str
    removed: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls,
        docker_host: str,
        name: str,
        *,
        image: str = IMAGE,
        volumes: Mapping[str | Path, str] | None = None,
        network: str = "host",
        extra_args: Sequence[str] = (),
    ) -> SystemdContainer:
        """``docker run -d`` the root with the flags that let systemd and unit sandboxing work."""
        _docker(docker_host, "rm", "-f", name, check=False)
        argv = [
            "run",
            "-d",
            "--name",
            name,
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--network",
            network,
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            # systemd as PID 1 powers off on SIGRTMIN+3 (SIGTERM would make it re-execute itself).
            "--stop-signal",
            "SIGRTMIN+3",
        ]
        for src, dest in (volumes or {}).items():
            argv += ["-v", f"{src}:{dest}"]
        argv += [*extra_args, image, "/sbin/init"]
        done = _docker(docker_host, *argv)
        return cls(docker_host=docker_host, name=name, container_id=done.stdout.strip())

    def exec(
        self, *argv: str, check: bool = True, timeout: float = 120, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        return _docker(self.docker_host, "exec", *env_args, self.name, *argv, check=check, timeout=timeout)

    def systemctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.exec("systemctl", *args, check=check)

    def wait_running(self, timeout: float = 90) -> str:
        """Wait until ``systemctl is-system-running`` says running or degraded; returns which.

        "degraded" is returned, not raised: the caller decides whether a failed unit matters
        (``failed_units()`` says which).
        """
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            done = self.exec("systemctl", "is-system-running", check=False, timeout=15)
            state = done.stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.5)
        raise TimeoutError(f"systemd in {self.name} still {state!r} after {timeout}s:\n{self.logs()}")

    def failed_units(self) -> list[str]:
        out = self.systemctl("list-units", "--failed", "--plain", "--no-legend").stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def unit_property(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-P", prop, unit).stdout.strip()

    def unit_properties(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show -p A,B,...`` as a dict (systemd prints them in its own order)."""
        out = self.systemctl("show", "-p", ",".join(props), unit).stdout
        return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)

    def write_file(self, dest: str, text: str, *, mode: str = "0644", owner: str = "root:root") -> None:
        """Put ``text`` at ``dest`` inside the container with the given mode and owner."""
        with tempfile.TemporaryDirectory(prefix="fleetd-put-") as tmp:
            src = Path(tmp) / "file"
            src.write_text(text)
            self.copy_in(src, dest)
        self.exec("chown", owner, dest)
        self.exec("chmod", mode, dest)

    def journal(self, unit: str | None = None, *extra: str) -> str:
        args = ["journalctl", "--no-pager", "-o", "cat", *extra]
        if unit:
            args += ["-u", unit]
        return self.exec(*args, check=False).stdout

    def copy_in(self, src: Path, dest: str) -> None:
        _docker(self.docker_host, "cp", str(src), f"{self.name}:{dest}", timeout=300)

    def logs(self) -> str:
        done = _docker(self.docker_host, "logs", "--tail", "50", self.name, check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        if not self.removed:
            _docker(self.docker_host, "rm", "-f", self.name, check=False)
            self.removed = True

    def __enter__(self) -> SystemdContainer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


@contextlib.contextmanager
def booted(
    docker_host: str, name: str = "sysd", *, volumes: Mapping[str | Path, str] | None = None
) -> Iterator[SystemdContainer]:
    """Import the root if needed, boot a container, wait for systemd, remove it afterwards."""
    import_image(docker_host)
    with SystemdContainer.start(docker_host, name, volumes=volumes) as box:
        box.wait_running()
        yield box


if __name__ == "__main__":
    started = time.monotonic()
    path = ensure_root_tarball(rebuild="--rebuild" in sys.argv[1:])
    print(f"{path} {path.stat().st_size / 1e6:.0f} MB ({time.monotonic() - started:.0f} s)")
