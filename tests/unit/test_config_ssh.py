"""ssh:// hosts and their ``ssh:`` block: URLs, files checked at load time (never prompting), file:line errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh
import pytest

from fleetd.cli import main
from fleetd.config import SSHSettings

if TYPE_CHECKING:
    from conftest import ConfigDir


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """An identity, the same key with a passphrase, its public half and a known_hosts file."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    paths = {
        "identity": tmp_path / "id_ed25519",
        "locked": tmp_path / "id_locked",
        "public": tmp_path / "id_ed25519.pub",
        "known_hosts": tmp_path / "known_hosts",
    }
    key.write_private_key(str(paths["identity"]))
    # ssh-keygen's own format needs bcrypt to encrypt; asyncssh refuses either kind without a passphrase.
    key.write_private_key(str(paths["locked"]), "pkcs8-pem", passphrase="secret")
    key.write_public_key(str(paths["public"]))
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    paths["known_hosts"].write_bytes(b"[web3.example.internal]:2222 " + host_key.export_public_key())
    return paths


def ssh_config(block: str, url: str = "ssh://deploy@web3.example.internal:2222") -> str:
    return f"hosts:\n  - name: web3\n    url: {url}\n    ssh:\n" + "".join(
        f"      {line}\n" for line in block.strip().splitlines()
    )


def test_full_ssh_block(cfg: ConfigDir, keys: dict[str, Path]) -> None:
    [host] = cfg.load(
        ssh_config(
            f"""
            identity: {keys['identity']}
            known_hosts: {keys['known_hosts']}
            socket: /run/user/1000/docker.sock
            connect_timeout: 4s
            keepalive_interval: 0s
            """.replace("            ", "")
        )
    ).hosts
    assert host.url == "ssh://deploy@web3.example.internal:2222"
    assert host.ssh == SSHSettings(
        user=None,
        identity=keys["identity"],
        known_hosts=keys["known_hosts"],
        socket="/run/user/1000/docker.sock",
        connect_timeout=4.0,
        keepalive_interval=0.0,
    )
    assert host.tls is None


def test_user_from_the_block_and_relative_paths(cfg: ConfigDir, keys: dict[str, Path]) -> None:
    (cfg.root / "ssh").mkdir()
    (cfg.root / "ssh" / "known_hosts").write_bytes(keys["known_hosts"].read_bytes())
    [host] = cfg.load(ssh_config("user: deploy\nknown_hosts: ssh/known_hosts", url="ssh://web3.example.internal")).hosts
    assert host.url == "ssh://web3.example.internal:22"
    assert host.ssh == SSHSettings(user="deploy", known_hosts=cfg.root / "ssh" / "known_hosts")


def test_passphrase_protected_identity_is_refused_without_prompting(cfg: ConfigDir, keys: dict[str, Path]) -> None:
    problem = cfg.problem(ssh_config(f"identity: {keys['locked']}\nknown_hosts: {keys['known_hosts']}"))
    assert (problem.file, problem.line, problem.field) == (cfg.main, 5, "hosts[0].ssh.identity")
    assert "protected by a passphrase and fleetd never prompts" in problem.message
    assert "ssh-agent" in problem.message


@pytest.mark.parametrize(
    ("which", "message"),
    [("public", "is not a private key fleetd can read"), ("missing", "cannot read")],
)
def test_unusable_identity(cfg: ConfigDir, keys: dict[str, Path], which: str, message: str) -> None:
    path = keys.get(which, keys["identity"].with_name("nope"))
    problem = cfg.problem(ssh_config(f"identity: {path}\nknown_hosts: {keys['known_hosts']}"))
    assert (problem.line, problem.field) == (5, "hosts[0].ssh.identity")
    assert message in problem.message and str(path) in problem.message


def test_known_hosts_must_parse(cfg: ConfigDir, keys: dict[str, Path]) -> None:
    bad = keys["known_hosts"].with_name("bad_known_hosts")
    bad.write_text("web3.example.internal\n")  # a host and no key
    problem = cfg.problem(ssh_config(f"known_hosts: {bad}"))
    assert (problem.line, problem.field) == (5, "hosts[0].ssh.known_hosts")
    assert f"{bad} is not a known_hosts file" in problem.message


def test_without_known_hosts_the_users_own_must_exist(
    cfg: ConfigDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    problem = cfg.problem("hosts:\n  - {name: web3, url: 'ssh://deploy@web3.example.internal'}\n")
    assert (problem.line, problem.field) == (2, "hosts[0].url")
    assert f"{tmp_path / 'home' / '.ssh' / 'known_hosts'} is not readable and ssh.known_hosts is not set" in (
        problem.message
    )
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    (tmp_path / "home" / ".ssh" / "known_hosts").write_text("")
    [host] = cfg.load("hosts:\n  - {name: web3, url: 'ssh://deploy@web3.example.internal'}\n").hosts
    assert host.ssh == SSHSettings()


def test_problems_in_the_block_each_with_their_line(cfg: ConfigDir, keys: dict[str, Path]) -> None:
    text = ssh_config(
        f"user: root\nknown_hosts: {keys['known_hosts']}\nsocket: docker.sock\nconnect_timeout: soon\ncolour: blue"
    )
    found = {(p.line, p.field): p.message for p in cfg.problems(text)}
    assert found[(5, "hosts[0].ssh.user")] == "the url logs in as 'deploy' but ssh.user says 'root'; keep one"
    assert "absolute path to the remote Docker socket" in found[(7, "hosts[0].ssh.socket")]
    assert (8, "hosts[0].ssh.connect_timeout") in found
    assert found[(9, "hosts[0].ssh.colour")].startswith("unknown key 'colour'")


def test_ssh_block_needs_an_ssh_url_and_ssh_takes_no_tls(cfg: ConfigDir, keys: dict[str, Path]) -> None:
    problem = cfg.problem(ssh_config(f"known_hosts: {keys['known_hosts']}", url="tcp://web3.example.internal"))
    assert (problem.field, problem.message) == ("hosts[0].ssh", "ssh: settings apply only to ssh:// URLs, not tcp://")
    text = ssh_config(f"known_hosts: {keys['known_hosts']}") + "    tls: {verify: false}\n"
    problem = cfg.problem(text)
    assert problem.field == "hosts[0].tls" and problem.message.startswith("ssh:// does not use TLS")


def test_check_config_reports_ssh_problems_with_file_and_line(
    cfg: ConfigDir, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = cfg.write(ssh_config(f"identity: {keys['locked']}\nknown_hosts: {keys['known_hosts']}"))
    assert main(["check-config", "--config", str(path)]) == 2
    _, err = capsys.readouterr()
    assert f"{path}:5: hosts[0].ssh.identity: {keys['locked']} is protected by a passphrase" in err


def test_ssh_hosts_are_not_reported_as_plain_tcp() -> None:
    from fleetd.config import HostSettings
    from fleetd.fleet.findings import host_findings

    ssh = HostSettings(name="web3", url="ssh://deploy@web3.example.internal:22", ssh=SSHSettings())
    tcp = HostSettings(name="web4", url="tcp://web4.example.internal:2375")
    assert [f for f in host_findings(ssh, {}, 0.0) if f.code == "insecure_transport"] == []
    assert [f.code for f in host_findings(tcp, {}, 0.0)] == ["insecure_transport"]
