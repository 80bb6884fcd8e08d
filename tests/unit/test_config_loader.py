"""load_config: the file as a whole, listen, poll, snapshots, log; how problems are located and reported."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import fleetd.config
import fleetd.config.model
from fleetd.config import (
    ConfigError,
    LogSettings,
    PollSettings,
    Problem,
    RetentionSettings,
    load_config,
)
from fleetd.config.listener import ListenerSettings
from fleetd.config.loader import TOP_KEYS
from tests.unit.tlskit import pem

if TYPE_CHECKING:
    from conftest import ConfigDir


def located(problem: Problem) -> tuple[str, int, str]:
    return problem.file, problem.line, problem.field


# -- the API -------------------------------------------------------------------------------------------


def test_package_reexports_every_model_class() -> None:
    missing = set(fleetd.config.model.__all__) - set(fleetd.config.__all__)
    assert not missing
    for name in fleetd.config.__all__:
        assert hasattr(fleetd.config, name), name


def test_problem_str_is_file_line_field_message() -> None:
    problem = Problem("config/fleetd.yaml", 12, "hosts[2].url", "unsupported scheme 'ftp'")
    assert str(problem) == "config/fleetd.yaml:12: hosts[2].url: unsupported scheme 'ftp'"
    assert str(Problem("f.yaml", 3, "", "invalid YAML: x")) == "f.yaml:3: invalid YAML: x"


def test_config_error_str_joins_problems_by_line() -> None:
    problems = [Problem("a.yaml", 1, "listen", "bad"), Problem("a.yaml", 2, "poll", "worse")]
    error = ConfigError(problems)
    assert error.problems == problems
    assert str(error) == "a.yaml:1: listen: bad\na.yaml:2: poll: worse"


# -- whole-file problems ---------------------------------------------------------------------------------


def test_minimal_config_gets_every_default(cfg: ConfigDir) -> None:
    settings = cfg.load("{}\n")
    assert settings.path == cfg.root / "fleetd.yaml"
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8080)
    assert settings.listen_tls is None
    assert settings.poll == PollSettings()
    assert settings.hosts == ()
    assert settings.inventory is None
    assert settings.snapshots.enabled is True
    assert settings.snapshots.path == cfg.root / "fleetd.db"
    assert settings.snapshots.interval == 300.0
    assert settings.snapshots.keep == RetentionSettings(last=30000, max_age=90 * 86400.0)
    assert settings.auth.tokens == ()
    assert settings.log == LogSettings(level="info", format="auto")
    assert settings.shutdown_grace == 10.0


def test_settings_are_frozen(cfg: ConfigDir) -> None:
    settings = cfg.load("listen: 127.0.0.1:9000\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.listen_port = 1  # type: ignore[misc]


def test_missing_file(cfg: ConfigDir) -> None:
    problem = cfg.problem()
    assert located(problem) == (cfg.main, 0, "")
    assert problem.message == "cannot read config file: No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    [problem] = info.value.problems
    assert (problem.file, problem.line) == (str(tmp_path), 0)
    assert "cannot read config file" in problem.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(cfg: ConfigDir, text: str) -> None:
    problem = cfg.problem(text)
    assert located(problem) == (cfg.main, 1, "")
    assert problem.message == "config file is empty; expected a mapping of settings"


def test_invalid_yaml_reports_the_error_line(cfg: ConfigDir) -> None:
    problem = cfg.problem(
        """
        listen: 127.0.0.1:8080
        poll:
          interval: 15s
           timeout: 5s
        """
    )
    assert located(problem) == (cfg.main, 4, "")
    # PyYAML's words ("... here") or libyaml's ("... in this context"): the same error
    assert problem.message.startswith("invalid YAML: mapping values are not allowed")


def test_unclosed_flow_mapping(cfg: ConfigDir) -> None:
    problem = cfg.problem("listen: 127.0.0.1:8080\nlog: {level: info\nshutdown_grace: 10s\n")
    assert problem.file == cfg.main
    assert problem.line == 3
    assert problem.message.startswith("invalid YAML:")


def test_two_documents_are_refused(cfg: ConfigDir) -> None:
    problem = cfg.problem("listen: 127.0.0.1:8080\n---\nlisten: 127.0.0.1:9090\n")
    assert located(problem) == (cfg.main, 2, "")
    assert "only one YAML document" in problem.message


def test_not_utf8(cfg: ConfigDir) -> None:
    (cfg.root / "fleetd.yaml").write_bytes(b"listen: 127.0.0.1:8080\nlog: {level: \xff}\n")
    problem = cfg.problem()
    assert located(problem) == (cfg.main, 2, "")
    assert "not valid UTF-8" in problem.message


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just words\n", "a single value")])
def test_top_level_must_be_a_mapping(cfg: ConfigDir, text: str, kind: str) -> None:
    problem = cfg.problem(text)
    assert located(problem) == (cfg.main, 1, "")
    assert problem.message == f"config file must be a mapping of settings at the top, not {kind}"


def test_duplicate_key(cfg: ConfigDir) -> None:
    problem = cfg.problem("poll:\n  interval: 15s\n  timeout: 5s\n  interval: 30s\n")
    assert located(problem) == (cfg.main, 4, "poll.interval")
    assert problem.message == "duplicate key 'interval' (first given at line 2)"


def test_relative_config_path_is_reported_as_given(cfg: ConfigDir, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.write("poll: {timeout: soon}\n")
    monkeypatch.chdir(cfg.root)
    with pytest.raises(ConfigError) as info:
        load_config(Path("fleetd.yaml"), environ={})
    assert str(info.value).startswith("fleetd.yaml:1: poll.timeout: invalid duration 'soon'")
    cfg.write("{}\n")
    assert load_config(Path("fleetd.yaml"), environ={}).path == cfg.root / "fleetd.yaml"


def test_yaml_anchors_and_merge_keys(cfg: ConfigDir) -> None:
    settings = cfg.load(
        """
        hosts:
          - &base
            name: a
            url: tcp://a.example.internal
            interval: 60s
          - <<: *base
            name: b
            url: tcp://b.example.internal
        """
    )
    assert [(h.name, h.url, h.interval) for h in settings.hosts] == [
        ("a", "tcp://a.example.internal:2375", 60.0),
        ("b", "tcp://b.example.internal:2375", 60.0),
    ]


# -- unknown keys --------------------------------------------------------------------------------------


def test_unknown_key_suggests_the_closest(cfg: ConfigDir) -> None:
    problem = cfg.problem("poll:\n  intervall: 15s\n")
    assert located(problem) == (cfg.main, 2, "poll.intervall")
    assert problem.message.startswith("unknown key 'intervall'; did you mean 'interval'?")
    assert "allowed keys: interval, timeout, connect_timeout, concurrency" in problem.message


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(cfg: ConfigDir) -> None:
    problem = cfg.problem("listen: 127.0.0.1:8080\nfrobnicate: yes\n")
    assert located(problem) == (cfg.main, 2, "frobnicate")
    assert problem.message.startswith(
        "unknown key 'frobnicate' (allowed keys: listen, listen_tls, poll, inventory, hosts, snapshots, "
        "auth, log, shutdown_grace"
    )
    assert problem.message.endswith(f"allowed keys: {', '.join(TOP_KEYS)})")


def test_unknown_key_nested_two_levels(cfg: ConfigDir) -> None:
    problem = cfg.problem("snapshots:\n  keep:\n    last: 10\n    maxage: 30d\n")
    assert located(problem) == (cfg.main, 4, "snapshots.keep.maxage")
    assert "did you mean 'max_age'?" in problem.message


# -- listen ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("0.0.0.0:9000", "0.0.0.0", 9000),
        ("localhost:8080", "localhost", 8080),
        ('"[::1]:8443"', "::1", 8443),
    ],
)
def test_listen(cfg: ConfigDir, text: str, host: str, port: int) -> None:
    settings = cfg.load(f"listen: {text}\n")
    assert (settings.listen_host, settings.listen_port) == (host, port)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost", "expected host:port, e.g. 127.0.0.1:8080, got 'localhost'"),
        ("localhost:0", "port must be from 1 to 65535, got 0"),
        ("localhost:70000", "port must be from 1 to 65535, got 70000"),
        ("localhost:http", "invalid port 'http'; expected a number from 1 to 65535"),
        ("'::1:8080'", "IPv6 addresses need brackets"),
        ("':8080'", "missing host in ':8080'; use 0.0.0.0:8080 to listen on all interfaces"),
        ("'[::1]8080'", "expected [address]:port"),
        ("'[nope]:8080'", "invalid IPv6 address 'nope'"),
        ("'bad host:80'", "invalid host name 'bad host'"),
        ("8080", "expected a string, got an integer (8080)"),
    ],
)
def test_bad_listen(cfg: ConfigDir, text: str, message: str) -> None:
    problem = cfg.problem(f"log: {{level: info}}\nlisten: {text}\n")
    assert located(problem) == (cfg.main, 2, "listen")
    assert message in problem.message


def test_listen_tls(cfg: ConfigDir) -> None:
    pem().write(cfg.root / "tls", ("ca.pem", "server.pem", "server-key.pem"))
    settings = cfg.load("listen_tls:\n  cert: tls/server.pem\n  key: tls/server-key.pem\n")
    assert settings.listen_tls is not None
    assert settings.listen_tls.cert == cfg.root / "tls" / "server.pem"
    assert settings.listen_tls.key == cfg.root / "tls" / "server-key.pem"


def test_listen_tls_needs_both_readable_files(cfg: ConfigDir) -> None:
    problems = cfg.problems("listen_tls:\n  cert: missing.pem\n")
    assert [located(p) for p in problems] == [
        (cfg.main, 2, "listen_tls.cert"),
        (cfg.main, 2, "listen_tls.key"),
    ]
    assert problems[0].message == f"cannot read {cfg.root / 'missing.pem'}: No such file or directory"
    assert problems[1].message == "missing required key 'key'"


# -- poll ------------------------------------------------------------------------------------------------


def test_poll_values(cfg: ConfigDir) -> None:
    settings = cfg.load(
        """
        poll:
          interval: 1m
          timeout: 10s
          connect_timeout: 2500ms
          concurrency: 50
          images_every: 3
          jitter: 0
          max_backoff: 1h
        """
    )
    assert settings.poll == PollSettings(
        interval=60.0,
        timeout=10.0,
        connect_timeout=2.5,
        concurrency=50,
        images_every=3,
        jitter=0.0,
        max_backoff=3600.0,
    )


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("concurrency: lots", "poll.concurrency", "expected an integer, got a string 'lots'"),
        ('concurrency: "10"', "poll.concurrency", "expected an integer, got a string '10'"),
        ("concurrency: 2.5", "poll.concurrency", "expected an integer, got a number (2.5)"),
        ("concurrency: true", "poll.concurrency", "expected an integer, got a boolean (true)"),
        ("concurrency: 0", "poll.concurrency", "must be at least 1, got 0"),
        ("images_every: -1", "poll.images_every", "must be at least 1, got -1"),
        ("jitter: 0.7", "poll.jitter", "must be between 0 and 0.5, got 0.7"),
        ("jitter: -0.1", "poll.jitter", "must be between 0 and 0.5, got -0.1"),
        ("jitter: lots", "poll.jitter", "expected a number, got a string 'lots'"),
        ("interval: fast", "poll.interval", "invalid duration 'fast'"),
        ("interval: 0s", "poll.interval", "duration must be greater than zero"),
        ("interval: -15s", "poll.interval", "duration must not be negative"),
        ("interval: yes", "poll.interval", "got the boolean true"),
        ("interval: [15s]", "poll.interval", "expected a duration such as '15s', got a list"),
        ("max_backoff: 0", "poll.max_backoff", "duration must be greater than zero"),
    ],
)
def test_bad_poll_values(cfg: ConfigDir, line: str, field: str, message: str) -> None:
    problem = cfg.problem(f"listen: 127.0.0.1:8080\npoll:\n  {line}\n")
    assert located(problem) == (cfg.main, 3, field)
    assert message in problem.message


def test_section_must_be_a_mapping(cfg: ConfigDir) -> None:
    problem = cfg.problem("listen: 127.0.0.1:8080\npoll: 15s\n")
    assert located(problem) == (cfg.main, 2, "poll")
    assert problem.message == "expected a mapping, got a string '15s'"


def test_null_section_means_defaults(cfg: ConfigDir) -> None:
    settings = cfg.load("poll:\nsnapshots:\nlog:\n")
    assert settings.poll == PollSettings()
    assert settings.log == LogSettings()


def test_timeout_must_be_less_than_interval(cfg: ConfigDir) -> None:
    problem = cfg.problem("poll:\n  interval: 15s\n  timeout: 15s\n")
    assert located(problem) == (cfg.main, 3, "poll.timeout")
    assert problem.message == "timeout 15s must be less than the interval 15s"


def test_timeout_checked_against_default_interval(cfg: ConfigDir) -> None:
    problem = cfg.problem("poll:\n  timeout: 20s\n")
    assert located(problem) == (cfg.main, 2, "poll.timeout")
    assert problem.message == "timeout 20s must be less than the interval 15s (default)"


def test_interval_checked_against_default_timeout(cfg: ConfigDir) -> None:
    problem = cfg.problem("poll:\n  interval: 2s\n")
    assert located(problem) == (cfg.main, 2, "poll.interval")
    assert problem.message == "interval 2s must be greater than the timeout 5s (default)"


def test_connect_timeout_must_not_exceed_timeout(cfg: ConfigDir) -> None:
    problem = cfg.problem("poll:\n  timeout: 5s\n  connect_timeout: 6s\n")
    assert located(problem) == (cfg.main, 3, "poll.connect_timeout")
    assert problem.message == "connect_timeout 6s must not exceed the timeout 5s"
    assert cfg.load("poll:\n  timeout: 5s\n  connect_timeout: 5s\n").poll.connect_timeout == 5.0


def test_an_invalid_interval_is_not_compared_with_the_timeout(cfg: ConfigDir) -> None:
    problem = cfg.problem("poll:\n  interval: often\n  timeout: 30s\n")
    assert located(problem) == (cfg.main, 2, "poll.interval")


# -- snapshots -------------------------------------------------------------------------------------------


def test_snapshot_values(cfg: ConfigDir) -> None:
    settings = cfg.load(
        "snapshots:\n  enabled: false\n  path: /var/lib/fleetd/s.db\n  interval: 1m\n"
        "  keep: {last: 10, max_age: 7d}\n"
    )
    snapshots = settings.snapshots
    assert snapshots.enabled is False
    assert snapshots.path == Path("/var/lib/fleetd/s.db")
    assert snapshots.interval == 60.0
    assert snapshots.keep == RetentionSettings(last=10, max_age=7 * 86400.0)


def test_relative_snapshot_path_is_next_to_the_config(cfg: ConfigDir) -> None:
    settings = cfg.load("snapshots: {path: data/../state/fleetd.db}\n")
    assert settings.snapshots.path == cfg.root / "state" / "fleetd.db"


def test_relative_snapshot_path_goes_to_state_directory(cfg: ConfigDir, tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = cfg.load("snapshots: {path: history.db}\n", environ={"STATE_DIRECTORY": str(state)})
    assert settings.snapshots.path == state / "history.db"


def test_default_snapshot_path_goes_to_first_state_directory(cfg: ConfigDir) -> None:
    settings = cfg.load("{}\n", environ={"STATE_DIRECTORY": "/var/lib/fleetd:/var/lib/other"})
    assert settings.snapshots.path == Path("/var/lib/fleetd/fleetd.db")


def test_absolute_snapshot_path_ignores_state_directory(cfg: ConfigDir) -> None:
    settings = cfg.load("snapshots: {path: /srv/f.db}\n", environ={"STATE_DIRECTORY": "/var/lib/fleetd"})
    assert settings.snapshots.path == Path("/srv/f.db")


def test_environ_defaults_to_the_process_environment(cfg: ConfigDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/from-env")
    path = cfg.write("{}\n")
    assert load_config(path).snapshots.path == Path("/var/lib/from-env/fleetd.db")


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("snapshots:\n  keep:\n    last: 0\n", 3, "snapshots.keep.last", "must be at least 1, got 0"),
        ("snapshots:\n  keep:\n    max_age: 0\n", 3, "snapshots.keep.max_age", "greater than zero"),
        ("snapshots:\n  keep: 30\n", 2, "snapshots.keep", "expected a mapping, got an integer (30)"),
        ("snapshots:\n  interval: 5 minutes\n", 2, "snapshots.interval", "invalid duration '5 minutes'"),
        ("snapshots:\n  enabled: maybe\n", 2, "snapshots.enabled", "expected true or false"),
        ("snapshots:\n  path: ''\n", 2, "snapshots.path", "expected a path, got an empty string"),
    ],
)
def test_bad_snapshot_values(cfg: ConfigDir, text: str, line: int, field: str, message: str) -> None:
    problem = cfg.problem(text)
    assert located(problem) == (cfg.main, line, field)
    assert message in problem.message


# -- log, shutdown_grace ---------------------------------------------------------------------------------


def test_log_values_are_case_insensitive(cfg: ConfigDir) -> None:
    settings = cfg.load("log: {level: WARNING, format: Json}\n")
    assert settings.log == LogSettings(level="warning", format="json")


def test_bad_log_values(cfg: ConfigDir) -> None:
    problems = cfg.problems("log:\n  level: warn\n  format: xml\n")
    assert [located(p) for p in problems] == [(cfg.main, 2, "log.level"), (cfg.main, 3, "log.format")]
    assert problems[0].message == "'warn' is not one of debug, info, warning, error; did you mean 'warning'?"
    assert problems[1].message == "'xml' is not one of auto, json, console"


def test_shutdown_grace(cfg: ConfigDir) -> None:
    assert cfg.load("shutdown_grace: 0\n").shutdown_grace == 0.0
    assert cfg.load("shutdown_grace: 1m\n").shutdown_grace == 60.0
    problem = cfg.problem("shutdown_grace: -1s\n")
    assert located(problem) == (cfg.main, 1, "shutdown_grace")


# -- all problems at once --------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_in_file_order(cfg: ConfigDir) -> None:
    cfg.write("hosts:\n  - name: extra\n    url: gopher://extra\n", "hosts.yaml")
    with pytest.raises(ConfigError) as info:
        cfg.load(
            """
            listen: nowhere
            poll:
              interval: 10s
              timeout: 10s
              concurrency: lots
            inventory: hosts.yaml
            hosts:
              - name: a
                url: ftp://a.example.internal
              - name: a
                url: tcp://b.example.internal
            snapshots: {keep: {last: 0}}
            log: {level: loud}
            """
        )
    inventory = str(cfg.root / "hosts.yaml")
    assert [located(p) for p in info.value.problems] == [
        (cfg.main, 1, "listen"),
        (cfg.main, 4, "poll.timeout"),
        (cfg.main, 5, "poll.concurrency"),
        (cfg.main, 9, "hosts[0].url"),
        (cfg.main, 10, "hosts[1].name"),
        (cfg.main, 12, "snapshots.keep.last"),
        (cfg.main, 13, "log.level"),
        (inventory, 3, "hosts[0].url"),
    ]
    assert str(info.value).splitlines()[3] == (
        f"{cfg.main}:9: hosts[0].url: unsupported scheme 'ftp'; use tcp://, http://, https://, unix:// or ssh://"
    )


def test_listener_limits_are_read_and_checked(cfg: ConfigDir) -> None:
    settings = cfg.load("listener: {idle_timeout: 5s, write_timeout: 1m, max_connections: 500, max_per_client: 20}\n")
    assert settings.listener == ListenerSettings(
        idle_timeout=5.0, write_timeout=60.0, max_connections=500, max_per_client=20
    )
    problems = [str(p) for p in cfg.problems("listener: {max_connections: 8, max_per_client: 0}\n")]
    assert f"{cfg.main}:1: listener.max_connections: must be 0 (automatic) or at least 16, got 8" in problems
    assert any(p.startswith(f"{cfg.main}:1: listener.max_per_client: ") for p in problems)


def test_events_values_and_the_ping_connection(cfg: ConfigDir) -> None:
    from fleetd.config.events import EventsSettings

    assert cfg.load("events: false\n").events == EventsSettings(enabled=False)
    settings = cfg.load(
        """
        events:
          max_subscribers: 5
          heartbeat: 5s
          ping_connection: false
        """
    )
    assert settings.events == EventsSettings(max_subscribers=5, heartbeat=5.0, ping_connection=False)
    problem = cfg.problem("events:\n  ping_connection: sometimes\n")
    assert located(problem) == (cfg.main, 2, "events.ping_connection")
