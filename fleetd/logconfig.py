"""structlog set-up, done once at start (and again in tests).

One pipeline for everything: fleetd's own structlog loggers and the stdlib loggers of aiohttp and asyncio
end as the same one-line JSON events (or a console rendering on a terminal). Under systemd each line is
prefixed with its syslog priority (``<4>{...}``) so journald records the level and
``journalctl -p warning`` filters.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, Final, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["LEVELS", "JournalPriorityPrefix", "configure_logging", "redact_secrets", "timestamper"]

LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# sd-daemon(3) prefixes: err, warning, info, debug.
_PRIORITY: Final[Mapping[str, int]] = {
    "critical": 3,
    "exception": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "info": 6,
    "debug": 7,
}

_STDLIB_LOGGERS: Final = ("aiohttp.access", "aiohttp.server", "aiohttp.client", "asyncio")

_SECRET_KEY: Final = re.compile(r"(?:^|[_-])(?:token|authorization|password|key_data)$", re.IGNORECASE)
_REDACTED: Final = "[redacted]"


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (_REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _redact(v))
            for k, v in value.items()
        }
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Replace values of keys such as ``token``, ``api_token``, ``Authorization``, ``password``, ``key_data``.

    Defence in depth only: code must not pass secrets to a logger in the first place. Nested mappings
    (e.g. request headers) are redacted too; ``token_name`` and the like are left alone.
    """
    for key, value in event_dict.items():
        if _SECRET_KEY.search(key):
            event_dict[key] = _REDACTED
        elif isinstance(value, Mapping):
            event_dict[key] = _redact(value)
    return event_dict


def timestamper(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """``timestamp`` as ISO 8601 UTC with milliseconds, e.g. ``2026-11-30T10:00:00.123Z``.

    Records from stdlib logging keep the time they were created, not the time they were formatted.
    """
    record = event_dict.get("_record")
    now = record.created if isinstance(record, logging.LogRecord) else time.time()
    millis = int(now * 1000) % 1000
    event_dict["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"
    return event_dict


class JournalPriorityPrefix:
    """Final renderer wrapper: ``<N>`` + the rendered line, N the syslog priority of the event's level."""

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        level = str(event_dict.get("level", method_name)).lower()
        rendered = self._renderer(logger, method_name, event_dict)
        if not isinstance(rendered, str):
            rendered = rendered.decode() if isinstance(rendered, bytes | bytearray) else str(rendered)
        return f"<{_PRIORITY.get(level, 6)}>{rendered}"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _to_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` goes to journald (systemd.exec(5): JOURNAL_STREAM is ``device:inode``).

    Compared with the stream's own fd when it has one, so a shell started from a unit and piping
    elsewhere does not get prefixes; streams without an fd (tests) only need the variable.
    """
    value = environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return True


class _OurHandler(logging.StreamHandler[TextIO]):
    """Marks the handler configure_logging installed, so a second call replaces it."""


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Configure structlog and stdlib logging to write to ``stream`` (default: stderr).

    ``fmt="auto"`` renders JSON lines unless ``stream`` is a terminal. Safe to call again (tests,
    reload); loggers already cached by ``cache_logger_on_first_use`` keep the configuration they were
    first used with, so take loggers with ``structlog.get_logger()`` after configuring.
    """
    try:
        numeric_level = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}") from None
    stream = stream if stream is not None else sys.stderr
    environ = environ if environ is not None else os.environ
    console = fmt == "console" or (fmt == "auto" and _is_tty(stream))

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]
    renderer: Processor
    if console:
        # ConsoleRenderer formats exc_info itself (and warns if format_exc_info ran first).
        renderer = structlog.dev.ConsoleRenderer(colors=_is_tty(stream))
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    if _to_journal(stream, environ):
        renderer = JournalPriorityPrefix(renderer)

    structlog.reset_defaults()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        context_class=dict,
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared[:2], structlog.stdlib.add_logger_name, *shared[2:]],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _OurHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _STDLIB_LOGGERS:
        named = logging.getLogger(name)
        named.setLevel(logging.NOTSET)  # inherit the root level
        named.propagate = True
