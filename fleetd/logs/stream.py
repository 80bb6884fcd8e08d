"""One log stream: the lines of one or many containers, in timestamp order within a small window.

Each container has a pump task that reads its upstream log stream (``timestamps=1``, the stamp stripped
and kept) into a bounded buffer of its own; a full buffer stops that pump, and with it the upstream read,
until the client has taken lines, so a slow client costs bounded memory and never a lost line.
The iterator emits the earliest buffered line once every live container has a line buffered (nothing
earlier can come) or once it has waited ``window`` seconds. With a :class:`Selection` the set of
containers is re-read from the fleet state when its change signal says a matching host's containers
changed (:mod:`fleetd.logs.discovery`), so containers that start later join the stream. :meth:`LogStream.aclose` cancels every pump, which closes every upstream connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

import structlog

from fleetd.dockerapi import DockerClient, DockerError
from fleetd.dockerapi.stream import MAX_LOG_LINE
from fleetd.fleet.state import ContainerQuery, FleetState
from fleetd.logs.discovery import ChangeWatch
from fleetd.logs.entries import LogEnd, LogEntry, LogError, since_param, split_timestamp

__all__ = ["ClientFor", "LogStream", "Selection", "StreamOptions", "Target", "TooManyContainers"]

log = structlog.get_logger("fleetd.logs")

#: The Engine client for a host; raises (any exception, its message is reported) when there is none.
ClientFor = Callable[[str], DockerClient]
Key = tuple[str, str]  # (host, container id)

IDLE_TICK = 1.0  # the iterator yields None this often when idle, so its writer can check the client
DISCOVERY_RETRY = 0.5  # a container still draining or recently failed is looked at again after this
RETRY_AFTER = 5.0  # a container whose stream failed is not tried again sooner
READ_TIMEOUT = 30.0  # a plain (not followed) read fails when the daemon sends nothing this long
BATCH = 512  # lines handed to the writer at once, so it writes them with one call
Item = LogEntry | LogError


class TooManyContainers(Exception):
    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"{count} containers match, more than the {limit} one log stream may follow "
            "(container_logs.max_containers); narrow the selection with label=, host= or name="
        )


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Selection:
    """The containers a merged stream reads: when followed, the running ones, re-evaluated on every
    state change; read once, all that match, stopped ones included."""

    hosts: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    name: str | None = None

    def query(self, *, running: bool = True) -> ContainerQuery:
        state = "running" if running else None
        return ContainerQuery(hosts=self.hosts, state=state, labels=self.labels, name=self.name)


@dataclass(frozen=True, slots=True)
class StreamOptions:
    follow: bool = False
    tail: int | None = None  # per container; None: all
    since: int | None = None  # Unix seconds
    window: float = 0.5
    max_containers: int = 100
    buffer_lines: int = 1000  # per container
    buffer_bytes: int = 256 * 1024  # per container (a line may overshoot it once)
    max_line: int = MAX_LOG_LINE


@dataclass(eq=False, slots=True)
class _Source:
    target: Target
    tail: int | str | None
    since: int | str | None
    items: deque[tuple[int, float, LogEntry]] = field(default_factory=deque)  # (ns, arrived, entry)
    size: int = 0
    space: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False
    error: str | None = None
    last_ns: int | None = None
    task: asyncio.Task[None] | None = None


class LogStream:
    """``async for item in stream`` gives :class:`LogEntry`, ``None`` (an idle tick) and, when the
    server ends the stream, one final :class:`LogEnd`. Use as ``async with`` or call :meth:`aclose`."""

    def __init__(
        self,
        clients: ClientFor,
        options: StreamOptions,
        *,
        targets: tuple[Target, ...] = (),
        state: FleetState | None = None,
        selection: Selection | None = None,
    ) -> None:
        self._clients = clients
        self._options = options
        self._state = state
        self._selection = selection
        self._sources: dict[Key, _Source] = {}
        self._last_ns: dict[Key, int] = {}  # where each container's lines stopped (no repeats on restart)
        self._failed_at: dict[Key, float] = {}
        self._known_at_start: set[Key] = set()
        self._started_ns = time.time_ns()
        self._seen_version = -1
        self._capped = False
        self._wake = asyncio.Event()
        self._errors: list[LogError] = []  # merged streams: containers whose stream failed, to report
        self._end: str | None = None
        self._closed = False
        self._changes: ChangeWatch | None = None
        for target in targets:
            self._add(target, options.tail, options.since)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """First discovery for a selection; raises :class:`TooManyContainers` before any stream opens."""
        if self._state is None or self._selection is None:
            return
        state, selection = self._state, self._selection
        # Followed: the running containers (stopped ones have nothing to follow). Read once: all of them.
        matching = state.containers(selection.query(running=self._options.follow))
        if len(matching) > self._options.max_containers:
            raise TooManyContainers(len(matching), self._options.max_containers)
        every = selection.query(running=False)
        self._known_at_start = {(c.host, c.id) for c in state.containers(every)}
        self._seen_version = state.version
        for c in matching:
            if c.stale:
                continue  # its host is not answering; discovery picks it up once it does
            self._add(Target(c.host, c.id, c.name), self._options.tail, self._options.since)
        self._changes = ChangeWatch(state, selection.hosts, self._wake)
        self._changes.start()

    def close(self, reason: str) -> None:
        """End the stream from outside (shutdown): the iterator sends ``LogEnd(reason)`` and stops."""
        if self._end is None:
            self._end = reason
        self._wake.set()

    async def aclose(self) -> None:
        """Cancel every pump and wait for it (each closes its upstream connection). Safe twice."""
        self._closed = True
        if self._changes is not None:
            await self._changes.aclose()
        tasks = [s.task for s in self._sources.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> LogStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def buffered(self) -> int:
        """Lines read from upstream and not yet taken by the client, over all containers."""
        return sum(len(s.items) for s in self._sources.values())

    @property
    def following(self) -> list[Target]:
        return [s.target for s in self._sources.values() if not s.done]

    # -- pumps ---------------------------------------------------------------------------------

    def _add(self, target: Target, tail: int | str | None, since: int | str | None) -> None:
        source = _Source(target, tail, since)
        self._sources[(target.host, target.id)] = source
        source.task = asyncio.create_task(self._pump(source), name=f"logs:{target.host}/{target.name}")

    async def _pump(self, source: _Source) -> None:
        target, options = source.target, self._options
        try:
            client = self._clients(target.host)
            inspected = await client.containers.inspect(target.id)
            tty = inspected.Config.Tty if inspected.Config is not None else False
            lines = client.containers.logs(
                target.id,
                tail="all" if source.tail is None else source.tail,
                since=source.since,
                timestamps=True,
                tty=tty,
                follow=options.follow,
                max_line=options.max_line,
                timeout=0,  # no bound on the whole read: a slow client may take its time
                read_timeout=None if options.follow else READ_TIMEOUT,
            )
            async with contextlib.aclosing(lines) as upstream:
                async for item in upstream:
                    stamp, ns, text = split_timestamp(item.line)
                    entry = LogEntry(
                        host=target.host,
                        id=target.id,
                        container=target.name,
                        stream=item.stream,
                        time=stamp,
                        line=text,
                    )
                    while source.size >= options.buffer_bytes or len(source.items) >= options.buffer_lines:
                        source.space.clear()
                        await source.space.wait()
                    source.items.append((time.time_ns() if ns is None else ns, time.monotonic(), entry))
                    source.size += len(text)
                    if ns is not None:
                        source.last_ns = ns
                    self._wake.set()
        except asyncio.CancelledError:
            raise
        except DockerError as exc:
            source.error = str(exc)
        except Exception as exc:  # no client for the host (disabled, removed): reported, not raised
            source.error = str(exc)
        finally:
            source.done = True
            self._wake.set()
        if source.error is not None:
            self._failed_at[(target.host, target.id)] = time.monotonic()
            log.info("log stream ended", host=target.host, container=target.name, error=source.error)

    # -- discovery -----------------------------------------------------------------------------

    def _discover(self) -> bool:
        """Start streams for matching containers not followed yet; True when some must be looked at
        again later (their last lines are still going out, or their stream failed a moment ago)."""
        state, selection = self._state, self._selection
        if state is None or selection is None or state.version == self._seen_version:
            return False
        self._seen_version = state.version
        again = False
        now = time.monotonic()
        for c in state.containers(selection.query()):
            key = (c.host, c.id)
            current = self._sources.get(key)
            if c.stale or (current is not None and not current.done):
                continue
            if (current is not None and current.items) or (
                now - self._failed_at.get(key, -RETRY_AFTER) < RETRY_AFTER
            ):
                self._seen_version = -1  # its last lines are still going out, or it failed: look again
                again = True
                continue
            if len(self.following) >= self._options.max_containers:
                if not self._capped:
                    log.warning("merged log stream is full", limit=self._options.max_containers)
                    self._capped = True
                continue
            last = self._last_ns.get(key)
            if current is not None and current.last_ns is not None:
                last = current.last_ns
            if last is not None:
                since: int | str | None = since_param(last + 1)
            elif key in self._known_at_start:
                since = since_param(self._started_ns)  # it ran before; only what came since we started
            else:
                since = None  # a container created after the start: all of its lines are new
            self._add(Target(c.host, c.id, c.name), None, since)
        return again

    # -- merging -------------------------------------------------------------------------------

    def _take(self, source: _Source) -> LogEntry:
        _, _, entry = source.items.popleft()
        source.size -= len(entry.line)
        source.space.set()
        return entry

    def _next_ready(self, now: float) -> tuple[_Source | None, float | None]:
        """The source whose head goes out now, else when the earliest head may go (monotonic)."""
        best: _Source | None = None
        every_live_has_one = True
        for source in self._sources.values():
            if source.items:
                if best is None or source.items[0][0] < best.items[0][0]:
                    best = source
            elif not source.done:
                every_live_has_one = False
        if best is None:
            return None, None
        due = best.items[0][1] + self._options.window
        if every_live_has_one or due <= now:
            return best, None
        return None, due

    def _prune(self) -> None:
        for key, source in list(self._sources.items()):
            if source.done and not source.items:
                if source.last_ns is not None:
                    self._last_ns[key] = source.last_ns
                if self._state is not None:
                    del self._sources[key]
                    if source.error is not None:
                        t = source.target
                        self._errors.append(
                            LogError(host=t.host, id=t.id, container=t.name, error=source.error)
                        )

    def _finished(self) -> str | None:
        """Why the stream is over by itself, or None. A selection that follows never ends by itself."""
        if self._state is not None and self._options.follow:
            return None
        if any(not s.done or s.items for s in self._sources.values()):
            return None
        if self._state is None and len(self._sources) == 1:
            (source,) = self._sources.values()
            if source.error is not None:
                return f"upstream error: {source.error}"
            return "container stopped" if self._options.follow else "all lines sent"
        return "all lines sent"

    def __aiter__(self) -> AsyncGenerator[list[Item] | LogEnd | None, None]:
        return self.items()

    async def items(self) -> AsyncGenerator[list[Item] | LogEnd | None, None]:
        """Batches of lines (every line ready now, up to :data:`BATCH`), ``None`` on an idle tick, and
        the final :class:`LogEnd`. Close it (``aclosing``) when leaving early."""
        loop = asyncio.get_running_loop()
        last_out = loop.time()
        next_discovery: float | None = None  # a retry of containers that could not be followed yet
        while not self._closed:
            if self._end is not None:
                yield LogEnd(self._end)
                return
            now = loop.time()
            changed = self._changes is not None and self._changes.take()
            if changed or (next_discovery is not None and now >= next_discovery):
                next_discovery = now + DISCOVERY_RETRY if self._discover() else None
            batch: list[Item] = []
            due: float | None = None
            while len(batch) < BATCH:
                source, due = self._next_ready(now)
                if source is None:
                    break
                batch.append(self._take(source))
            self._prune()
            if self._errors:
                batch.extend(self._errors)
                self._errors.clear()
            if batch:
                yield batch
                last_out = loop.time()
                continue
            if (reason := self._finished()) is not None:
                yield LogEnd(reason)
                return
            if now - last_out >= IDLE_TICK:
                yield None
                last_out = loop.time()
                continue
            wait = last_out + IDLE_TICK - now
            if next_discovery is not None:
                wait = min(wait, next_discovery - now)
            if due is not None:
                wait = min(wait, due - now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait)):
                    await self._wake.wait()
