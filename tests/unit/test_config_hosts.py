"""Hosts: URLs, names, labels, TLS files, per-host timing and the inventory file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fleetd.config import ConfigError, HostSettings, Problem, TLSSettings, load_config
from tests.unit.tlskit import pem

if TYPE_CHECKING:
    from conftest import ConfigDir


def located(problem: Problem) -> tuple[str, int, str]:
    return problem.file, problem.line, problem.field


def one_host(cfg: ConfigDir, entry: str) -> HostSettings:
    [host] = cfg.load(f"hosts:\n  - {entry}\n").hosts
    return host


# -- URLs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("tcp://docker01.example.internal:2375", "tcp://docker01.example.internal:2375"),
        ("tcp://Docker01.Example.Internal", "tcp://docker01.example.internal:2375"),
        ("TCP://10.0.0.5:12375/", "tcp://10.0.0.5:12375"),
        ("http://docker01.example.internal", "http://docker01.example.internal:2375"),
        ("tcp://[::1]", "tcp://[::1]:2375"),
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
    ],
)
def test_url_is_normalised(cfg: ConfigDir, url: str, normalised: str) -> None:
    host = one_host(cfg, f"{{name: h, url: '{url}'}}")
    assert host.url == normalised
    assert host.tls is None


def test_https_without_tls_block_means_system_cas_verified(cfg: ConfigDir) -> None:
    host = one_host(cfg, "{name: h, url: 'https://h.example.internal'}")
    assert host.url == "https://h.example.internal:2376"
    assert host.tls == TLSSettings(ca=None, cert=None, key=None, verify=True)


def test_tcp_with_tls_defaults_to_port_2376(cfg: ConfigDir) -> None:
    host = one_host(cfg, "{name: h, url: 'tcp://h.example.internal', tls: {verify: false}}")
    assert host.url == "tcp://h.example.internal:2376"
    assert host.tls == TLSSettings(verify=False)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://h.example.internal", "unsupported scheme 'ftp'; use tcp://, http://, https://, unix:// or ssh://"),
        ("ssh://user:pw@h", "passwords are not accepted in an ssh:// URL"),
        ("ssh://h/var/run/docker.sock", "a path ('/var/run/docker.sock') is not allowed in an ssh:// URL"),
        ("h.example.internal:2375", "not a URL: 'h.example.internal:2375'; use e.g. tcp://host:2375"),
        ("/var/run/docker.sock", "not a URL; for a socket path write unix:///var/run/docker.sock"),
        ("tcp://:2375", "tcp:// needs a host"),
        ("tcp://h:99999", "invalid port in 'tcp://h:99999'"),
        ("tcp://h:0", "port must be from 1 to 65535, got 0"),
        ("tcp://h:abc", "invalid port in 'tcp://h:abc'"),
        ("tcp://user:secret@h:2375", "user names and passwords ('user@') are not supported"),
        ("tcp://h:2375?tls=1", "no query string"),
        ("tcp://h:2375#x", "no fragment"),
        ("tcp://h:2375/v1.41", "a path ('/v1.41') is not allowed in a tcp:// URL"),
        ("unix://var/run/docker.sock", "unix:// needs an absolute socket path"),
        ("tcp://bad_host!:2375", "invalid host name 'bad_host!'"),
    ],
)
def test_bad_url(cfg: ConfigDir, url: str, message: str) -> None:
    problem = cfg.problem(f"hosts:\n  - name: ok\n    url: unix:///ok.sock\n  - name: h\n    url: '{url}'\n")
    assert located(problem) == (cfg.main, 5, "hosts[1].url")
    assert message in problem.message


def test_url_must_be_a_string(cfg: ConfigDir) -> None:
    problem = cfg.problem("hosts:\n  - name: h\n    url: 2375\n")
    assert located(problem) == (cfg.main, 3, "hosts[0].url")
    assert problem.message == "expected a string, got an integer (2375)"


@pytest.mark.parametrize("scheme", ["http", "unix"])
def test_tls_block_contradicts_plain_schemes(cfg: ConfigDir, scheme: str) -> None:
    url = "http://h:2375" if scheme == "http" else "unix:///run/docker.sock"
    problem = cfg.problem(f"hosts:\n  - name: h\n    url: {url}\n    tls:\n      verify: true\n")
    assert located(problem) == (cfg.main, 5, "hosts[0].tls")
    assert problem.message == f"{scheme}:// does not use TLS; use https:// or tcp:// with a tls: block"


# -- names, required keys, list shape ----------------------------------------------------------------------


def test_missing_name_and_url(cfg: ConfigDir) -> None:
    problems = cfg.problems("hosts:\n  - name: ok\n    url: tcp://ok\n  - labels: {env: prod}\n")
    assert [located(p) for p in problems] == [
        (cfg.main, 4, "hosts[1].name"),
        (cfg.main, 4, "hosts[1].url"),
    ]
    assert [p.message for p in problems] == ["missing required key 'name'", "missing required key 'url'"]


@pytest.mark.parametrize("name", ["-leading-dash", "has space", "x" * 64, "ünïcode", "a/b", "''"])
def test_bad_host_name(cfg: ConfigDir, name: str) -> None:
    problem = cfg.problem(f"hosts:\n  - url: tcp://h\n    name: {name}\n")
    assert located(problem) == (cfg.main, 3, "hosts[0].name")
    assert "invalid host name" in problem.message
    assert "letters, digits, '.', '_' or '-'" in problem.message


@pytest.mark.parametrize("name", ["a", "docker01", "web-01.dc_2", "x" * 63, "0"])
def test_good_host_name(cfg: ConfigDir, name: str) -> None:
    assert one_host(cfg, f"{{name: {name}, url: 'tcp://h'}}").name == name


def test_duplicate_host_name_points_at_the_second_and_names_the_first(cfg: ConfigDir) -> None:
    problem = cfg.problem(
        """
        hosts:
          - name: docker01
            url: tcp://a
          - name: other
            url: tcp://b
          - url: tcp://c
            name: docker01
        """
    )
    assert located(problem) == (cfg.main, 7, "hosts[2].name")
    assert problem.message == f"duplicate host name 'docker01'; first declared at {cfg.main}:2"


def test_host_entry_must_be_a_mapping(cfg: ConfigDir) -> None:
    problem = cfg.problem("hosts:\n  - name: ok\n    url: tcp://ok\n  - docker02\n")
    assert located(problem) == (cfg.main, 4, "hosts[1]")
    assert problem.message == "expected a mapping, got a string 'docker02'"


def test_hosts_must_be_a_list(cfg: ConfigDir) -> None:
    problem = cfg.problem("hosts:\n  docker01: tcp://a\n")
    assert located(problem) == (cfg.main, 2, "hosts")
    assert problem.message == "expected a list, got a mapping"


def test_unknown_host_key(cfg: ConfigDir) -> None:
    problem = cfg.problem("hosts:\n  - name: a\n    url: tcp://a\n    lables: {x: y}\n")
    assert located(problem) == (cfg.main, 4, "hosts[0].lables")
    assert problem.message.startswith("unknown key 'lables'; did you mean 'labels'?")


def test_host_source_enabled_and_order(cfg: ConfigDir) -> None:
    settings = cfg.load(
        """
        hosts:
          - name: a
            url: tcp://a
          - name: b
            url: tcp://b
            enabled: false
        """
    )
    assert [(h.name, h.enabled, h.source) for h in settings.hosts] == [
        ("a", True, f"{cfg.main}:2"),
        ("b", False, f"{cfg.main}:4"),
    ]


# -- labels ----------------------------------------------------------------------------------------------


def test_labels_are_strings_as_written(cfg: ConfigDir) -> None:
    host = one_host(cfg, "{name: h, url: 'tcp://h', labels: {env: prod, rack: 7, version: 1.10, gpu: true}}")
    assert dict(host.labels) == {"env": "prod", "rack": "7", "version": "1.10", "gpu": "true"}
    with pytest.raises(TypeError):
        host.labels["env"] = "dev"  # type: ignore[index]


def test_no_labels_is_an_empty_mapping(cfg: ConfigDir) -> None:
    assert dict(one_host(cfg, "{name: h, url: 'tcp://h'}").labels) == {}


def test_bad_labels(cfg: ConfigDir) -> None:
    problems = cfg.problems(
        """
        hosts:
          - name: h
            url: tcp://h
            labels:
              env: prod
              nested: {a: 1}
              listed: [1, 2]
              missing:
        """
    )
    assert [located(p) for p in problems] == [
        (cfg.main, 6, "hosts[0].labels.nested"),
        (cfg.main, 7, "hosts[0].labels.listed"),
        (cfg.main, 8, "hosts[0].labels.missing"),
    ]
    assert problems[0].message == "label values must be strings, got a mapping"
    assert problems[1].message == "label values must be strings, got a list"
    assert problems[2].message == "label values must be strings, got null; write '' for an empty value"


def test_labels_must_be_a_mapping(cfg: ConfigDir) -> None:
    problem = cfg.problem("hosts:\n  - name: h\n    url: tcp://h\n    labels: [env=prod]\n")
    assert located(problem) == (cfg.main, 4, "hosts[0].labels")
    assert problem.message == "expected a mapping of label names to values, got a list"


# -- per-host interval / timeout -------------------------------------------------------------------------


def test_hosts_inherit_or_override_poll_timing(cfg: ConfigDir) -> None:
    settings = cfg.load(
        """
        poll: {interval: 30s, timeout: 4s}
        hosts:
          - {name: a, url: 'tcp://a'}
          - {name: b, url: 'tcp://b', interval: 2m}
          - {name: c, url: 'tcp://c', timeout: 10s}
          - {name: d, url: 'tcp://d', interval: 1s, timeout: 500ms}
        """
    )
    assert [(h.name, h.interval, h.timeout) for h in settings.hosts] == [
        ("a", 30.0, 4.0),
        ("b", 120.0, 4.0),
        ("c", 30.0, 10.0),
        ("d", 1.0, 0.5),
    ]


def test_host_timeout_not_below_its_own_interval(cfg: ConfigDir) -> None:
    problem = cfg.problem("hosts:\n  - name: h\n    url: tcp://h\n    interval: 10s\n    timeout: 10s\n")
    assert located(problem) == (cfg.main, 5, "hosts[0].timeout")
    assert problem.message == "timeout 10s must be less than the interval 10s"


def test_host_timeout_checked_against_poll_interval(cfg: ConfigDir) -> None:
    problem = cfg.problem(
        "poll: {interval: 15s, timeout: 5s}\nhosts:\n  - name: h\n    url: tcp://h\n    timeout: 20s\n"
    )
    assert located(problem) == (cfg.main, 5, "hosts[0].timeout")
    assert problem.message == "timeout 20s must be less than the interval 15s (poll.interval)"


def test_host_interval_checked_against_poll_timeout(cfg: ConfigDir) -> None:
    problem = cfg.problem(
        "poll: {interval: 15s, timeout: 5s}\nhosts:\n  - name: h\n    url: tcp://h\n    interval: 5s\n"
    )
    assert located(problem) == (cfg.main, 5, "hosts[0].interval")
    assert problem.message == "interval 5s must be greater than the timeout 5s (poll.timeout)"


def test_bad_host_durations(cfg: ConfigDir) -> None:
    problems = cfg.problems("hosts:\n  - name: h\n    url: tcp://h\n    interval: often\n    timeout: -1s\n")
    assert [located(p) for p in problems] == [
        (cfg.main, 4, "hosts[0].interval"),
        (cfg.main, 5, "hosts[0].timeout"),
    ]


def test_enabled_must_be_a_boolean(cfg: ConfigDir) -> None:
    problem = cfg.problem("hosts:\n  - name: h\n    url: tcp://h\n    enabled: 'no'\n")
    assert located(problem) == (cfg.main, 4, "hosts[0].enabled")
    assert problem.message == "expected true or false, got a string 'no'"


# -- TLS files -------------------------------------------------------------------------------------------


def write_tls_files(cfg: ConfigDir, folder: str = "tls") -> None:
    pem().write(cfg.root / folder)  # real PEM: the loader loads it as the client will


def test_tls_paths_are_relative_to_the_config_file(cfg: ConfigDir) -> None:
    write_tls_files(cfg)
    host = one_host(
        cfg,
        "{name: s, url: 'tcp://s:2376', tls: {ca: tls/ca.pem, cert: tls/cert.pem, key: tls/key.pem}}",
    )
    tls_dir = cfg.root / "tls"
    assert host.tls == TLSSettings(
        ca=tls_dir / "ca.pem", cert=tls_dir / "cert.pem", key=tls_dir / "key.pem", verify=True
    )


def test_tls_absolute_paths(cfg: ConfigDir) -> None:
    write_tls_files(cfg)
    ca = cfg.root / "tls" / "ca.pem"
    host = one_host(cfg, f"{{name: s, url: 'https://s', tls: {{ca: '{ca}'}}}}")
    assert host.tls == TLSSettings(ca=ca)


def test_tls_file_missing(cfg: ConfigDir) -> None:
    problem = cfg.problem(
        "hosts:\n  - name: s\n    url: tcp://s\n    tls:\n      verify: true\n      ca: tls/ca.pem\n"
    )
    assert located(problem) == (cfg.main, 6, "hosts[0].tls.ca")
    assert problem.message == f"cannot read {cfg.root / 'tls' / 'ca.pem'}: No such file or directory"


def test_tls_path_is_a_directory(cfg: ConfigDir) -> None:
    (cfg.root / "tls").mkdir()
    problem = cfg.problem("hosts:\n  - name: s\n    url: tcp://s\n    tls: {ca: tls}\n")
    assert located(problem) == (cfg.main, 4, "hosts[0].tls.ca")
    assert problem.message == f"cannot read {cfg.root / 'tls'}: not a regular file"


@pytest.mark.timeout(10)
def test_tls_path_is_a_fifo_reported_without_blocking(cfg: ConfigDir) -> None:
    os.mkfifo(cfg.root / "ca.pem")
    problem = cfg.problem("hosts:\n  - name: s\n    url: tcp://s\n    tls: {ca: ca.pem}\n")
    assert located(problem) == (cfg.main, 4, "hosts[0].tls.ca")
    assert problem.message == f"cannot read {cfg.root / 'ca.pem'}: not a regular file"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read any file")
def test_tls_file_unreadable(cfg: ConfigDir) -> None:
    write_tls_files(cfg)
    (cfg.root / "tls" / "ca.pem").chmod(0)
    problem = cfg.problem("hosts:\n  - name: s\n    url: tcp://s\n    tls: {ca: tls/ca.pem}\n")
    assert located(problem) == (cfg.main, 4, "hosts[0].tls.ca")
    assert "Permission denied" in problem.message


@pytest.mark.parametrize(("given", "missing", "line"), [("cert", "key", 5), ("key", "cert", 5)])
def test_tls_cert_and_key_go_together(cfg: ConfigDir, given: str, missing: str, line: int) -> None:
    write_tls_files(cfg)
    problem = cfg.problem(
        f"hosts:\n  - name: s\n    url: tcp://s\n    tls:\n      {given}: tls/{given}.pem\n"
    )
    assert located(problem) == (cfg.main, line, f"hosts[0].tls.{given}")
    assert problem.message == f"'{given}' given without '{missing}'; a client certificate needs both"


def test_tls_block_shape(cfg: ConfigDir) -> None:
    problems = cfg.problems(
        "hosts:\n  - {name: a, url: 'tcp://a', tls: true}\n  - {name: b, url: 'tcp://b', tls: {cacert: x}}\n"
    )
    assert [located(p) for p in problems] == [
        (cfg.main, 2, "hosts[0].tls"),
        (cfg.main, 3, "hosts[1].tls.cacert"),
    ]
    assert problems[0].message == "expected a mapping, got a boolean (true)"
    assert problems[1].message.startswith("unknown key 'cacert'")
    assert "allowed keys: ca, cert, key, verify" in problems[1].message


# -- inventory -------------------------------------------------------------------------------------------


def test_inventory_hosts_follow_config_hosts(cfg: ConfigDir) -> None:
    inventory = cfg.write(
        "hosts:\n  - name: web01\n    url: tcp://web01\n  - name: web02\n    url: tcp://web02\n",
        "hosts.yaml",
    )
    settings = cfg.load("inventory: hosts.yaml\nhosts:\n  - name: local\n    url: unix:///run/docker.sock\n")
    assert settings.inventory == inventory
    assert [(h.name, h.source) for h in settings.hosts] == [
        ("local", f"{cfg.main}:3"),
        ("web01", f"{inventory}:2"),
        ("web02", f"{inventory}:4"),
    ]


def test_inventory_only(cfg: ConfigDir) -> None:
    cfg.write("hosts:\n  - {name: a, url: 'tcp://a', timeout: 1s}\n", "inv/hosts.yaml")
    settings = cfg.load("poll: {interval: 5s, timeout: 2s}\ninventory: inv/hosts.yaml\n")
    assert [(h.name, h.interval, h.timeout) for h in settings.hosts] == [("a", 5.0, 1.0)]


def test_inventory_problems_name_the_inventory_file_and_line(cfg: ConfigDir) -> None:
    hosts = """
        hosts:
          - name: ok
            url: tcp://ok
          - name: bad
            url: ftp://bad
            tiemout: 3s
        """
    inventory = str(cfg.write(hosts, "hosts.yaml"))
    problems = cfg.problems("inventory: hosts.yaml\n")
    assert [located(p) for p in problems] == [
        (inventory, 5, "hosts[1].url"),
        (inventory, 6, "hosts[1].tiemout"),
    ]
    assert problems[1].message.startswith("unknown key 'tiemout'; did you mean 'timeout'?")


def test_duplicate_name_across_config_and_inventory(cfg: ConfigDir) -> None:
    hosts = "hosts:\n  - name: other\n    url: tcp://o\n  - name: a\n    url: tcp://x\n"
    inventory = str(cfg.write(hosts, "hosts.yaml"))
    problem = cfg.problem("hosts:\n  - name: a\n    url: tcp://a\ninventory: hosts.yaml\n")
    assert located(problem) == (inventory, 4, "hosts[1].name")
    assert problem.message == f"duplicate host name 'a'; first declared at {cfg.main}:2"


def test_missing_inventory_is_reported_at_the_inventory_key(cfg: ConfigDir) -> None:
    problem = cfg.problem("listen: 127.0.0.1:8080\ninventory: nothere.yaml\n")
    assert located(problem) == (cfg.main, 2, "inventory")
    assert problem.message == (
        f"cannot read inventory file {cfg.root / 'nothere.yaml'}: No such file or directory"
    )


def test_invalid_inventory_yaml(cfg: ConfigDir) -> None:
    inventory = str(cfg.write("hosts:\n  - name: a\n   url: tcp://a\n", "hosts.yaml"))
    problem = cfg.problem("inventory: hosts.yaml\n")
    assert located(problem) == (inventory, 3, "")
    assert problem.message.startswith("invalid YAML:")


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("", 1, "", "inventory file is empty; expected a mapping of settings"),
        ("- name: a\n", 1, "", "inventory file must be a mapping of settings at the top, not a list"),
        ("servers: []\n", 1, "hosts", "missing required key 'hosts' (a list)"),
        ("hosts: {a: 1}\n", 1, "hosts", "expected a list, got a mapping"),
    ],
)
def test_inventory_shape(cfg: ConfigDir, text: str, line: int, field: str, message: str) -> None:
    inventory = str(cfg.write(text, "hosts.yaml"))
    problems = cfg.problems("inventory: hosts.yaml\n")
    assert (inventory, line, field) in [located(p) for p in problems]
    assert message in [p.message for p in problems]


def test_inventory_unknown_top_level_key(cfg: ConfigDir) -> None:
    inventory = str(cfg.write("hosts: []\nhost: []\n", "hosts.yaml"))
    problem = cfg.problem("inventory: hosts.yaml\n")
    assert located(problem) == (inventory, 2, "host")
    assert problem.message == "unknown key 'host'; did you mean 'hosts'? (allowed keys: hosts)"


def test_inventory_tls_paths_are_relative_to_the_inventory_file(cfg: ConfigDir) -> None:
    write_tls_files(cfg, "inv/tls")
    cfg.write("hosts:\n  - {name: s, url: 'tcp://s', tls: {ca: tls/ca.pem}}\n", "inv/hosts.yaml")
    [host] = cfg.load("inventory: inv/hosts.yaml\n").hosts
    assert host.tls == TLSSettings(ca=cfg.root / "inv" / "tls" / "ca.pem")


def test_inventory_path_in_problems_follows_the_config_path(
    cfg: ConfigDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg.write("inventory: inv/hosts.yaml\n")
    cfg.write("hosts:\n  - {name: a, url: 'gopher://a'}\n", "inv/hosts.yaml")
    monkeypatch.chdir(cfg.root)
    with pytest.raises(ConfigError) as info:
        load_config(Path("fleetd.yaml"), environ={})
    assert str(info.value).startswith("inv/hosts.yaml:2: hosts[0].url: unsupported scheme 'gopher'")
