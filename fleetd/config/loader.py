"""``load_config``: a YAML file (and its inventory) → frozen :class:`Settings`, or all of its problems."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from fleetd.config import ranges
from fleetd.config.answer_limits import read_answer_limits
from fleetd.config.auth import read_auth
from fleetd.config.container_logs import read_container_logs
from fleetd.config.docker_api import read_docker_api
from fleetd.config.durations import format_duration
from fleetd.config.errors import ConfigError, Problems
from fleetd.config.events import read_events
from fleetd.config.fields import Section, absolute
from fleetd.config.gc import read_gc
from fleetd.config.hosts import read_hosts, timing_message
from fleetd.config.listener import read_listener
from fleetd.config.model import (
    ListenTLSSettings,
    LogSettings,
    PollSettings,
    RetentionSettings,
    Settings,
    SnapshotSettings,
)
from fleetd.config.notify import read_notify
from fleetd.config.tls_files import TLSCheck
from fleetd.config.urls import parse_listen
from fleetd.config.yamlsrc import load_mapping

__all__ = ["load_config"]

TOP_KEYS = (
    "listen",
    "listen_tls",
    "poll",
    "inventory",
    "hosts",
    "snapshots",
    "auth",
    "log",
    "shutdown_grace",
    "events",
    "listener",
    "docker_api",
    "container_logs",
    "notify",
    "gc",
)
LISTEN_TLS_KEYS = ("cert", "key")
POLL_KEYS = (
    "interval",
    "timeout",
    "connect_timeout",
    "concurrency",
    "images_every",
    "jitter",
    "max_backoff",
    "max_answer",
    "liveness",
)
SNAPSHOT_KEYS = ("enabled", "path", "interval", "keep")
KEEP_KEYS = ("last", "max_age", "on_demand")
LOG_KEYS = ("level", "format")
LOG_LEVELS = {name: name for name in ("debug", "info", "warning", "error")}
LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: dict[str, LogFormat] = {"auto": "auto", "json": "json", "console": "console"}
_DEFAULTS = Settings(path=Path())  # the slotted dataclass keeps no defaults on the class itself


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the config at *path*; raise :class:`ConfigError` listing every problem.

    Relative paths in the file are relative to its directory, except ``snapshots.path``, which is
    relative to ``$STATE_DIRECTORY`` when *environ* (default: ``os.environ``) sets it. Files named in the
    config (TLS material, token files, the inventory) are opened here: call it off the event loop.
    """
    env = os.environ if environ is None else environ
    display = str(path)
    config_path = absolute(Path(path), Path.cwd())
    config_dir = config_path.parent
    problems = Problems()
    root = load_mapping(config_path, display, problems, what="config file")
    if root is None:
        raise ConfigError(problems.sorted(display))
    top = Section(root, file=display, field="", allowed=TOP_KEYS, problems=problems)

    listen_host, listen_port = _read_listen(top)
    poll, poll_valid = _read_poll(top)
    hosts, inventory = read_hosts(top, config_dir=config_dir, poll=poll, poll_valid=poll_valid)
    settings = Settings(
        path=config_path,
        listen_host=listen_host,
        listen_port=listen_port,
        listen_tls=_read_listen_tls(top, config_dir),
        poll=poll,
        hosts=hosts,
        inventory=inventory,
        snapshots=_read_snapshots(top, config_dir, env),
        auth=read_auth(top, config_dir=config_dir),
        log=_read_log(top),
        listener=read_listener(top),
        shutdown_grace=_or(
            top.duration("shutdown_grace", allow_zero=True, maximum=ranges.SHUTDOWN_GRACE_MAX),
            _DEFAULTS.shutdown_grace,
        ),
        events=read_events(top),
        docker_api=read_docker_api(top, config_dir=config_dir),
        container_logs=read_container_logs(top),
        notify=read_notify(top, config_dir=config_dir),
        gc=read_gc(top),
    )
    if problems:
        raise ConfigError(problems.sorted(display))
    return settings


def _int_or(value: int | None, default: int) -> int:
    return default if value is None else value


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _read_listen(top: Section) -> tuple[str, int]:
    text = top.text("listen")
    if text is not None:
        try:
            return parse_listen(text)
        except ValueError as exc:
            top.problem("listen", str(exc))
    return _DEFAULTS.listen_host, _DEFAULTS.listen_port


def _read_listen_tls(top: Section, config_dir: Path) -> ListenTLSSettings | None:
    sec = top.section("listen_tls", LISTEN_TLS_KEYS)
    if sec is None:
        return None
    cert = sec.readable_file("cert", config_dir, required=True)
    key = sec.readable_file("key", config_dir, required=True)
    if cert is None or key is None:
        return None
    found = TLSCheck().server(cert, key)  # loaded as the listener will load it
    if found is not None:
        sec.problem(*found)
        return None
    return ListenTLSSettings(cert=cert, key=key)


def _read_poll(top: Section) -> tuple[PollSettings, bool]:
    """poll settings, and whether interval and timeout were both valid (the hosts inherit them)."""
    default = PollSettings()
    sec = top.section("poll", POLL_KEYS)
    if sec is None:
        return default, "poll" not in top.invalid
    interval = _or(sec.duration("interval", maximum=ranges.INTERVAL_MAX), default.interval)
    timeout = _or(sec.duration("timeout", maximum=ranges.TIMEOUT_MAX), default.timeout)
    connect_timeout = sec.duration("connect_timeout", maximum=ranges.TIMEOUT_MAX)
    timeout_parsed = "timeout" not in sec.invalid
    valid = timeout_parsed and "interval" not in sec.invalid
    if valid and timeout >= interval:
        valid = False
        blame, other = ("timeout", "interval") if sec.has("timeout") else ("interval", "timeout")
        note = "" if sec.has(other) else " (default)"
        sec.problem(blame, timing_message(blame, interval, timeout, note))
    if connect_timeout is not None and timeout_parsed and connect_timeout > timeout:
        sec.problem(
            "connect_timeout",
            f"connect_timeout {format_duration(connect_timeout)} must not exceed "
            f"the timeout {format_duration(timeout)}",
        )
    return (
        PollSettings(
            interval=interval,
            timeout=timeout,
            connect_timeout=connect_timeout,
            concurrency=sec.integer("concurrency", minimum=1, maximum=ranges.CONCURRENCY_MAX)
            or default.concurrency,
            images_every=sec.integer("images_every", minimum=1, maximum=ranges.IMAGES_EVERY_MAX)
            or default.images_every,
            jitter=_or(sec.number("jitter", minimum=0.0, maximum=0.5), default.jitter),
            max_backoff=_or(sec.duration("max_backoff", maximum=ranges.MAX_BACKOFF_MAX), default.max_backoff),
            max_answer=read_answer_limits(sec),
            liveness=_or(sec.duration("liveness", allow_zero=True), default.liveness),
        ),
        valid,
    )


def _state_dir(env: Mapping[str, str], config_dir: Path) -> Path:
    """Where a relative snapshots.path lives: systemd's $STATE_DIRECTORY (first entry) or the config's dir."""
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    return absolute(Path(state), config_dir) if state else config_dir


def _read_snapshots(top: Section, config_dir: Path, env: Mapping[str, str]) -> SnapshotSettings:
    default = SnapshotSettings()
    base = _state_dir(env, config_dir)
    sec = top.section("snapshots", SNAPSHOT_KEYS)
    if sec is None:
        return SnapshotSettings(path=absolute(default.path, base))
    keep = RetentionSettings()
    keep_sec = sec.section("keep", KEEP_KEYS)
    if keep_sec is not None:
        keep = RetentionSettings(
            last=keep_sec.integer("last", minimum=1, maximum=ranges.KEEP_COUNT_MAX) or keep.last,
            max_age=_or(keep_sec.duration("max_age", maximum=ranges.MAX_AGE_MAX), keep.max_age),
            on_demand=_int_or(
                keep_sec.integer("on_demand", minimum=0, maximum=ranges.KEEP_COUNT_MAX), keep.on_demand
            ),
        )
    enabled = sec.boolean("enabled")
    return SnapshotSettings(
        enabled=default.enabled if enabled is None else enabled,
        path=sec.path("path", base) or absolute(default.path, base),
        interval=_or(
            sec.duration(
                "interval", minimum=ranges.SNAPSHOT_INTERVAL_MIN, maximum=ranges.SNAPSHOT_INTERVAL_MAX
            ),
            default.interval,
        ),
        keep=keep,
    )


def _read_log(top: Section) -> LogSettings:
    default = LogSettings()
    sec = top.section("log", LOG_KEYS)
    if sec is None:
        return default
    return LogSettings(
        level=sec.choice("level", LOG_LEVELS) or default.level,
        format=sec.choice("format", LOG_FORMATS) or default.format,
    )
