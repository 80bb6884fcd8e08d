"""Client commands under a pseudo-terminal (what a person sees) or with a pipe read as it comes."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from tests.integration.ctl_kit import CtlFleet, fleetd_cli

__all__ = ["PtyProcess", "Stream", "run_in_pty"]


class PtyProcess:
    """A command whose stdin, stdout and stderr are one pseudo-terminal of ``columns`` × ``rows``."""

    def __init__(self, argv: list[str], env: dict[str, str], *, columns: int = 120, rows: int = 40) -> None:
        self.argv, self.env, self.size = argv, dict(env, TERM="xterm-256color"), (rows, columns)
        self.output = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._master = -1

    def __enter__(self) -> PtyProcess:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.size[0], self.size[1], 0, 0))
        self._master = master
        self._proc = subprocess.Popen(self.argv, env=self.env, stdin=slave, stdout=slave, stderr=slave,
                                      start_new_session=True)  # fmt: skip
        os.close(slave)
        return self

    def read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self._master, 65536)
        except OSError:  # EIO: the other side is closed
            return False
        if not chunk:
            return False
        self.output += chunk.decode("utf-8", errors="replace")
        return True

    def wait_for(self, text: str | Callable[[str], bool], within: float) -> str:
        probe = text if callable(text) else (lambda out: text in out)
        deadline = time.monotonic() + within
        while not probe(self.output):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not seen within {within:g}s: {text!r}; the terminal showed:\n{self.output[-3000:]}"
                )
            if not self.read(0.2) and not probe(self.output):
                raise AssertionError(f"the command ended before {text!r} showed:\n{self.output[-3000:]}")
        return self.output

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            while self.read(0):
                pass
        os.close(self._master)


def run_in_pty(fleet: CtlFleet, args: list[str], until: Callable[[str], bool], **env: str) -> str:
    """Output of ``fleetd ARGS`` on a terminal, once ``until`` holds or the command ended."""
    with PtyProcess([*fleetd_cli(), *args], fleet.env(**env)) as term:
        term.wait_for(until, within=20)
        while term.read(0.5):
            if term._proc is not None and term._proc.poll() is not None and not term.read(0.1):
                break
        return term.output


class Stream:
    """A command's stdout (and stderr) through pipes, read by a thread as lines arrive."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv, self.env = argv, env
        self.output = ""
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Stream:
        self._proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)  # fmt: skip
        for pipe in (self._proc.stdout, self._proc.stderr):
            t = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _pump(self, pipe: Any) -> None:
        for line in pipe:
            with self._lock:
                self.output += line

    def wait_for(self, text: str, within: float, *, must: bool = True) -> str:
        """The output once ``text`` is in it or the command ended; past ``within`` an AssertionError,
        or (``must=False``) the output as it is."""
        deadline = time.monotonic() + within
        while True:
            with self._lock:
                out = self.output
            if text in out:
                return out
            ended = self._proc is not None and self._proc.poll() is not None
            if ended or time.monotonic() > deadline:
                for t in self._threads:
                    t.join(1)
                with self._lock:
                    out = self.output
                if text in out or ended or not must:
                    return out
                raise AssertionError(f"not seen within {within:g}s: {text!r}; output so far:\n{out[-3000:]}")
            time.sleep(0.1)

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            for t in self._threads:
                t.join(2)
            for pipe in (self._proc.stdout, self._proc.stderr):
                if pipe is not None:
                    pipe.close()
