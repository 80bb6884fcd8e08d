"""Hostile and broken config files: every problem is file:line: field: message, never a hang or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fleetd.cli import main
from fleetd.config import AnswerLimits, ConfigError, load_config
from tests.unit.tlskit import pem

if TYPE_CHECKING:
    from conftest import ConfigDir

MiB = 1024 * 1024


def test_max_answer_sizes(cfg: ConfigDir) -> None:
    settings = cfg.load(
        "poll:\n  max_answer: {containers: 128MiB, images: 1GB, info: 65536, other: 1.5MiB}\n"
    )
    assert settings.poll.max_answer == AnswerLimits(
        containers=128 * MiB, images=10**9, info=65536, other=int(1.5 * MiB)
    )
    assert cfg.load("{}\n").poll.max_answer == AnswerLimits(
        containers=64 * MiB, images=32 * MiB, info=4 * MiB, other=16 * MiB
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "invalid size 'lots'"),
        ("12 parsecs", "invalid size '12 parsecs'"),
        ("1KiB", "must be between 64KiB and 4GiB, got '1KiB'"),
        ("5GiB", "must be between 64KiB and 4GiB, got '5GiB'"),
        ("[1]", "expected a size such as '64MiB', got a list"),
        ("true", "expected a size, got True"),
    ],
)
def test_bad_max_answer_is_named(cfg: ConfigDir, value: str, message: str) -> None:
    problem = cfg.problem(f"poll:\n  max_answer:\n    containers: {value}\n")
    assert (problem.line, problem.field) == (3, "poll.max_answer.containers")
    assert message in problem.message


# -- hostile files ---------------------------------------------------------------------------------


@pytest.fixture(params=["libyaml", "python"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The bounds hold with libyaml's parser under the composer and with PyYAML's own (its fallback)."""
    import fleetd.config.yamlsrc as yamlsrc

    if request.param == "python":
        monkeypatch.setattr(yamlsrc, "LOADER", yamlsrc._BoundedLoader)
    elif yamlsrc.LOADER is yamlsrc._BoundedLoader:
        pytest.skip("PyYAML without libyaml here")
    return str(request.param)


def _alias_bomb() -> str:
    """Nine levels of ten aliases each: 10^9 scalars from about 1 KB of YAML."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_quickly(cfg: ConfigDir, loader: str) -> None:
    text = _alias_bomb()
    assert len(text) < 1100
    started = time.monotonic()
    problem = cfg.problem(text)
    assert time.monotonic() - started < 5
    assert problem.file == cfg.main and 2 <= problem.line <= 10
    assert problem.message.startswith("config file refused: aliases expand to more than 500,000 values")


def test_anchors_and_aliases_within_reason_still_work(cfg: ConfigDir, loader: str) -> None:
    hosts = "".join(f"  - {{<<: *d, name: h{i}, url: 'tcp://10.0.0.{i}:2375'}}\n" for i in range(200))
    settings = cfg.load(f"poll: &d {{interval: 30s}}\nhosts:\n{hosts}")
    assert len(settings.hosts) == 200 and settings.hosts[199].interval == 30.0


@pytest.mark.parametrize("where", ["config", "inventory"])
def test_nesting_10000_deep_is_refused_with_file_and_line(cfg: ConfigDir, where: str, loader: str) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    if where == "config":
        problem = cfg.problem(f"listen: 127.0.0.1:8080\nhosts: {deep}\n")
        file = cfg.main
    else:
        cfg.write(f"hosts:\n  - {deep}\n", "inventory.yaml")
        problem = cfg.problem("inventory: inventory.yaml\n")
        file = str(cfg.root / "inventory.yaml")
    assert (problem.file, problem.line) == (file, 2)
    assert "refused: nested more than 64 levels deep" in problem.message


def test_block_nesting_past_the_bound_is_refused_by_either_parser(cfg: ConfigDir, loader: str) -> None:
    deep = "".join(f"{'  ' * i}k:\n" for i in range(100)) + "  " * 100 + "v\n"
    problem = cfg.problem(f"listen: 127.0.0.1:8080\nlabels:\n{deep}")
    assert problem.file == cfg.main and problem.line == 66
    assert "refused: nested more than 64 levels deep" in problem.message


def test_a_fifo_config_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fleetd.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as caught:
        load_config(fifo, environ={})
    [problem] = caught.value.problems
    assert str(problem) == f"{fifo}:0: cannot read config file: a named pipe (FIFO), not a regular file"


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("/dev/zero", "a character device"),
        ("/dev/urandom", "a character device"),
        ("fifo", "a named pipe (FIFO)"),
    ],
)
def test_an_inventory_that_is_not_a_regular_file_is_named_at_its_line(
    cfg: ConfigDir, target: str, kind: str
) -> None:
    if target == "fifo":
        os.mkfifo(cfg.root / "fifo")
        target = str(cfg.root / "fifo")
    problem = cfg.problem(f"listen: 127.0.0.1:8080\ninventory: {target}\n")
    assert (problem.file, problem.line, problem.field) == (cfg.main, 2, "inventory")
    assert problem.message == f"cannot read inventory file {target}: {kind}, not a regular file"


def test_an_oversized_config_is_refused(cfg: ConfigDir) -> None:
    path = cfg.root / "fleetd.yaml"
    path.write_bytes(b"# padding\n" * (1_700_000))
    problem = cfg.problem()
    assert problem.message == "cannot read config file: larger than 16 MiB"


# -- ranges ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("snapshots:\n  interval: 1ms\n", "snapshots.interval", "must be at least 10s, got 1ms"),
        ("snapshots:\n  interval: 90d\n", "snapshots.interval", "must be at most 30d, got 90d"),
        (
            "snapshots:\n  keep:\n    last: 100000000000000000000\n",
            "snapshots.keep.last",
            "must be at most 10000000, got 100000000000000000000",
        ),
        ("snapshots:\n  keep:\n    max_age: 99999d\n", "snapshots.keep.max_age", "must be at most 36500d"),
        ("poll:\n  interval: 2d\n", "poll.interval", "must be at most 1d, got 2d"),
        ("poll:\n  max_backoff: 400d\n", "poll.max_backoff", "must be at most 1d, got 400d"),
        ("poll:\n  concurrency: 10000000\n", "poll.concurrency", "must be at most 100000"),
        ("shutdown_grace: 1000h\n", "shutdown_grace", "must be at most 1h, got 1000h"),
        (
            "hosts:\n  - {name: a, url: 'tcp://h:2375', timeout: 2h, interval: 3h}\n",
            "hosts[0].timeout",
            "must be at most 1h, got 2h",
        ),
    ],
)
def test_out_of_range_values_are_named(cfg: ConfigDir, text: str, field: str, message: str) -> None:
    problem = cfg.problem(text)
    assert problem.field == field
    assert message in problem.message


def test_check_config_exits_2_on_an_alias_bomb_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    done = subprocess.run(
        [sys.executable, "-m", "fleetd", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"{path}:") and "alias bomb" in done.stderr
    assert "Traceback" not in done.stderr


# -- TLS files: loaded as the service loads them ---------------------------------------------------


def _tls_case(cfg: ConfigDir, case: str) -> tuple[str, int, str, str]:
    """Writes a config with one bad TLS file; returns (config text, line, field, message part)."""
    material = pem()
    material.write(cfg.root / "tls")
    tls = cfg.root / "tls"
    host = "hosts:\n  - name: s\n    url: tcp://127.0.0.1:2376\n    tls:\n"
    if case == "garbage ca":
        (tls / "bad.pem").write_text(
            "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
        )
        return host + "      ca: tls/bad.pem\n", 5, "hosts[0].tls.ca", "holds no PEM certificate"
    if case == "empty ca":
        (tls / "empty.pem").write_bytes(b"")
        return host + "      ca: tls/empty.pem\n", 5, "hosts[0].tls.ca", "holds no PEM certificate"
    if case == "mismatched pair":
        (tls / "other.pem").write_bytes(material.other_key)
        text = host + "      ca: tls/ca.pem\n      cert: tls/cert.pem\n      key: tls/other.pem\n"
        return text, 7, "hosts[0].tls.key", "and the key"
    if case == "encrypted key":
        (tls / "enc.pem").write_bytes(material.encrypted_key)
        text = host + "      cert: tls/cert.pem\n      key: tls/enc.pem\n"
        return text, 6, "hosts[0].tls.key", "is encrypted with a passphrase, and fleetd never prompts for one"
    assert case == "garbage listen cert"
    (tls / "junk.pem").write_text("junk\n")
    return (
        "listen_tls:\n  cert: tls/junk.pem\n  key: tls/key.pem\n",
        2,
        "listen_tls.cert",
        "holds no PEM certificate",
    )


TLS_CASES = ["garbage ca", "empty ca", "mismatched pair", "encrypted key", "garbage listen cert"]


@pytest.mark.parametrize("case", TLS_CASES)
def test_check_config_loads_every_tls_file(
    cfg: ConfigDir, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text, line, field, message = _tls_case(cfg, case)
    path = cfg.write(text)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:{line}: {field}: "), err
    assert message in err


def test_run_refuses_an_encrypted_key_without_prompting_or_a_traceback(cfg: ConfigDir) -> None:
    text, line, field, _ = _tls_case(cfg, "encrypted key")
    path = cfg.write(text)
    done = subprocess.run(
        [sys.executable, "-m", "fleetd", "run", "--config", str(path)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
        start_new_session=True,  # no controlling terminal for OpenSSL to prompt on
    )
    assert done.returncode == 2
    assert f"{path}:{line}: {field}: " in done.stderr and "Traceback" not in done.stderr
    assert "pass phrase" not in done.stderr.lower()
