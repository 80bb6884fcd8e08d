from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from fleetd.logconfig import configure_logging

ANSI = re.compile(r"\x1b\[")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(stream)]


def test_json_lines_carry_event_level_timestamp() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out, environ={})
    log = structlog.get_logger()
    log.info("host up", host="h1", containers=3)
    log.debug("not shown")
    log.warning("host down", host="h2", error="connection refused")

    got = events(out)
    assert [e["event"] for e in got] == ["host up", "host down"]
    assert got[0]["level"] == "info" and got[1]["level"] == "warning"
    assert got[0]["host"] == "h1" and got[0]["containers"] == 3
    assert all(TIMESTAMP.match(e["timestamp"]) for e in got)
    assert not ANSI.search(out.getvalue())


def test_contextvars_are_merged() -> None:
    out = io.StringIO()
    configure_logging(stream=out, environ={})
    structlog.contextvars.bind_contextvars(host="h7")
    structlog.get_logger().info("polled")
    assert events(out)[0]["host"] == "h7"


def test_exceptions_are_rendered_into_the_line() -> None:
    out = io.StringIO()
    configure_logging(stream=out, environ={})
    try:
        raise RuntimeError("kaputt")
    except RuntimeError:
        structlog.get_logger().exception("poll failed")
    (event,) = events(out)
    assert event["level"] == "error"
    assert "RuntimeError: kaputt" in event["exception"]


@pytest.mark.parametrize(
    ("method", "prefix"),
    [("debug", "<7>"), ("info", "<6>"), ("warning", "<4>"), ("error", "<3>"), ("critical", "<3>")],
)
def test_journal_priority_prefix(method: str, prefix: str) -> None:
    out = io.StringIO()
    configure_logging("debug", stream=out, environ={"JOURNAL_STREAM": "8:12345"})
    getattr(structlog.get_logger(), method)("something")
    (line,) = lines(out)
    assert line.startswith(prefix + "{")
    assert json.loads(line[len(prefix) :])["event"] == "something"


def test_no_prefix_without_journal_stream() -> None:
    out = io.StringIO()
    configure_logging(stream=out, environ={})
    structlog.get_logger().warning("careful")
    assert lines(out)[0].startswith("{")


def test_journal_stream_is_compared_with_the_streams_fd(tmp_path: Path) -> None:
    with (tmp_path / "log").open("w") as f:
        st = os.fstat(f.fileno())
        configure_logging(stream=f, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        structlog.get_logger().warning("to the journal")
        configure_logging(stream=f, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        structlog.get_logger().warning("elsewhere")
    first, second = (tmp_path / "log").read_text().splitlines()
    assert first.startswith("<4>{") and second.startswith("{")


def test_stdlib_loggers_go_through_the_same_pipeline() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out, environ={"JOURNAL_STREAM": "1:1"})
    logging.getLogger("aiohttp.access").info("%s %s %d", "GET", "/hosts", 200)
    logging.getLogger("asyncio").warning("Executing <Task> took 0.3 seconds")
    logging.getLogger("aiohttp.client").debug("filtered out by level")

    got = lines(out)
    assert len(got) == 2
    assert got[0].startswith("<6>{") and got[1].startswith("<4>{")
    access, slow = (json.loads(line[3:]) for line in got)
    assert access == {
        "event": "GET /hosts 200",
        "level": "info",
        "logger": "aiohttp.access",
        "timestamp": access["timestamp"],
    }
    assert TIMESTAMP.match(access["timestamp"])
    assert slow["logger"] == "asyncio" and slow["level"] == "warning"


def test_stdlib_exception_is_rendered() -> None:
    out = io.StringIO()
    configure_logging(stream=out, environ={})
    try:
        raise ValueError("bad frame")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    (event,) = events(out)
    assert event["level"] == "error" and "ValueError: bad frame" in event["exception"]


def test_secrets_are_redacted() -> None:
    out = io.StringIO()
    configure_logging(stream=out, environ={})
    structlog.get_logger().info(
        "auth",
        token="s3cr3t-1",
        api_token="s3cr3t-2",
        Authorization="Bearer s3cr3t-3",
        password="s3cr3t-4",
        key_data="-----BEGIN s3cr3t-5",
        headers={"Authorization": "Bearer s3cr3t-6", "Accept": "application/json"},
        token_name="ci",
    )
    text = out.getvalue()
    assert "s3cr3t" not in text
    (event,) = events(out)
    assert event["token"] == event["Authorization"] == event["key_data"] == "[redacted]"
    assert event["headers"] == {"Authorization": "[redacted]", "Accept": "application/json"}
    assert event["token_name"] == "ci"


def test_forced_console_on_a_non_tty_has_no_ansi() -> None:
    out = io.StringIO()
    configure_logging(fmt="console", stream=out, environ={})
    structlog.get_logger().warning("host down", host="h1")
    text = out.getvalue()
    assert "host down" in text and "host=h1" in text
    assert not ANSI.search(text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines(out)[0])


def test_auto_uses_console_on_a_tty_and_json_otherwise() -> None:
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            configure_logging(stream=tty, environ={})
            structlog.get_logger().info("on a terminal")
            tty.flush()
        text = os.read(master, 65536).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "on a terminal" in text and not text.lstrip().startswith("{")
    assert ANSI.search(text)

    out = io.StringIO()
    configure_logging(stream=out, environ={})
    structlog.get_logger().info("in a pipe")
    assert events(out)[0]["event"] == "in a pipe"


def test_configure_twice_replaces_the_handler_and_the_stream() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first, environ={})
    configure_logging("warning", stream=second, environ={})
    structlog.get_logger().info("filtered")
    structlog.get_logger().error("kept")
    logging.getLogger("aiohttp.server").error("kept too")
    assert first.getvalue() == ""
    assert [e["event"] for e in events(second)] == ["kept", "kept too"]


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("verbose", stream=io.StringIO(), environ={})
