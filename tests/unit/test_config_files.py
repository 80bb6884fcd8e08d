"""The shipped sample configs, and ``fleetd check-config``."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fleetd.cli import main
from fleetd.config import TLSSettings, answer_limits, load_config
from fleetd.config import auth as auth_keys
from fleetd.config import container_logs as container_log_keys
from fleetd.config import docker_api as docker_api_keys
from fleetd.config import events as events_keys
from fleetd.config import hosts as host_keys
from fleetd.config import loader as top_keys
from fleetd.config import notify as notify_keys
from fleetd.config import ssh as ssh_keys
from fleetd.config.gc import GC_KEYS
from fleetd.config.listener import LISTENER_KEYS

if TYPE_CHECKING:
    from conftest import ConfigDir

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
EXAMPLE = CONFIG_DIR / "fleetd.example.yaml"


def test_example_config_loads() -> None:
    settings = load_config(EXAMPLE, environ={})
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8080)
    assert settings.poll.connect_timeout == 3.0
    assert settings.snapshots.path == CONFIG_DIR / "fleetd.db"
    assert [h.name for h in settings.hosts] == ["docker01", "local", "registry-box", "slow-box", "old-box"]
    by_name = {h.name: h for h in settings.hosts}
    assert dict(by_name["docker01"].labels) == {"env": "prod", "rack": "r1"}
    assert by_name["registry-box"].tls == TLSSettings()
    assert (by_name["slow-box"].interval, by_name["slow-box"].timeout) == (60.0, 10.0)
    assert by_name["old-box"].enabled is False
    assert [t.name for t in settings.auth.tokens] == ["ci-bot"]


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^[\s#-]*([a-z_0-9]+):", text, flags=re.MULTILINE))
    every_key = {
        *top_keys.TOP_KEYS,
        *top_keys.LISTEN_TLS_KEYS,
        *top_keys.POLL_KEYS,
        *top_keys.SNAPSHOT_KEYS,
        *top_keys.KEEP_KEYS,
        *top_keys.LOG_KEYS,
        *host_keys.HOST_KEYS,
        *host_keys.TLS_KEYS,
        *ssh_keys.SSH_KEYS,
        *auth_keys.AUTH_KEYS,
        *auth_keys.TOKEN_KEYS,
        *answer_limits.LIMIT_KEYS,
        *events_keys.EVENTS_KEYS,
        *LISTENER_KEYS,
        *docker_api_keys.DOCKER_API_KEYS,
        *docker_api_keys.TLS_KEYS,
        *container_log_keys.CONTAINER_LOGS_KEYS,
        *notify_keys.NOTIFY_KEYS,
        *GC_KEYS,
    }
    assert every_key - documented == set()


def test_example_inventory_loads(cfg: ConfigDir) -> None:
    settings = cfg.load(f"inventory: '{CONFIG_DIR / 'hosts.example.yaml'}'\n")
    assert [h.name for h in settings.hosts] == ["web01", "web02", "batch01", "spare01"]
    assert all(h.source.startswith(str(CONFIG_DIR / "hosts.example.yaml")) for h in settings.hosts)


def test_run_config_is_the_local_daemon() -> None:
    settings = load_config(CONFIG_DIR / "fleetd.yaml", environ={})
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8080)
    assert (settings.poll.interval, settings.poll.timeout) == (15.0, 5.0)
    assert [(h.name, h.url, h.enabled) for h in settings.hosts] == [
        ("local", "unix:///var/run/docker.sock", True)
    ]
    assert settings.snapshots.path == CONFIG_DIR / "fleetd.db"


@pytest.mark.parametrize("path", [EXAMPLE, CONFIG_DIR / "fleetd.yaml"])
def test_check_config_accepts_the_samples(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: ok (")
    assert err == ""


def test_check_config_good(cfg: ConfigDir, capsys: pytest.CaptureFixture[str]) -> None:
    path = cfg.write("hosts:\n  - {name: a, url: 'tcp://a'}\n  - {name: b, url: 'tcp://b', enabled: false}\n")
    assert main(["check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (2 hosts, 1 enabled)\n"
    assert err == ""


def test_check_config_bad_prints_every_problem(cfg: ConfigDir, capsys: pytest.CaptureFixture[str]) -> None:
    path = cfg.write("listen: nowhere\nhosts:\n  - name: a\n    url: ftp://a\n")
    assert main(["check-config", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:1: listen: expected host:port, e.g. 127.0.0.1:8080, got 'nowhere'",
        f"{path}:4: hosts[0].url: unsupported scheme 'ftp'; use tcp://, http://, https://, unix:// or ssh://",
    ]


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}:0: cannot read config file: No such file or directory\n"


def test_example_config_carries_no_usable_token() -> None:
    """No word of the example (quoted or not) is the plaintext of a token it configures."""
    text = EXAMPLE.read_text(encoding="utf-8")
    hashes = {t.token_sha256 for t in load_config(EXAMPLE, environ={}).auth.tokens}
    words = set(re.findall(r"[^\s\"'`]+", text))
    assert hashes and not {hashlib.sha256(w.encode()).hexdigest() for w in words} & hashes
    assert "example-token-do-not-use" not in text
