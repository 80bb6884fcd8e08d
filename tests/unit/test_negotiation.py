from __future__ import annotations

import pytest

from fleetd.dockerapi import (
    CLIENT_API_VERSION,
    EngineProtocolError,
    EngineVersionError,
    negotiate_version,
    parse_endpoint,
)


@pytest.mark.parametrize(
    ("daemon_max", "daemon_min", "expected"),
    [
        ("1.41", None, "1.41"),  # Docker 20.10: the daemon's maximum is lower than ours
        ("1.52", "1.44", CLIENT_API_VERSION),  # Docker 29: ours is lower, and above its minimum
        ("1.47", "1.24", "1.47"),
        (None, None, "1.24"),  # no header and nothing else known: the floor
        ("1.24", None, "1.24"),
    ],
)
def test_negotiate_picks_the_lower_version(
    daemon_max: str | None, daemon_min: str | None, expected: str
) -> None:
    assert negotiate_version(daemon_max, daemon_min) == expected


def test_client_speaks_at_least_1_47() -> None:
    major, minor = (int(x) for x in CLIENT_API_VERSION.split("."))
    assert (major, minor) >= (1, 47)


def test_daemon_older_than_1_24_is_refused() -> None:
    with pytest.raises(EngineVersionError, match=r"older than the oldest supported 1\.24"):
        negotiate_version("1.12")


def test_daemon_minimum_above_ours_is_refused() -> None:
    with pytest.raises(EngineVersionError, match=r"requires API ≥ 1\.99"):
        negotiate_version("1.99", "1.99")


def test_garbage_version_is_a_protocol_error() -> None:
    with pytest.raises(EngineProtocolError):
        negotiate_version("banana")


def test_parse_endpoint_variants() -> None:
    assert parse_endpoint("tcp://h:2375").base == "http://h:2375"
    assert parse_endpoint("http://h:2375").base == "http://h:2375"
    e = parse_endpoint("https://h:2376")
    assert e.base == "https://h:2376" and e.tls is not None and e.tls.verify
    u = parse_endpoint("unix:///var/run/docker.sock")
    assert u.unix_path == "/var/run/docker.sock" and u.tls is None
    with pytest.raises(ValueError, match="unsupported scheme"):
        parse_endpoint("ftp://h:1")
