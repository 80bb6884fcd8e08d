"""How a refused stream-local channel is explained: the one shell probe's answers, mapped to messages.

The real-sshd tests (tests/integration/test_ssh_real.py) cover missing, not-a-socket and forwarding
refused; permission denied needs a non-root login, so the mapping is checked here with a stand-in for
the connection's ``run`` (the probe's own shell is exercised by those tests).
"""

from __future__ import annotations

from typing import Any, cast

import asyncssh
import pytest

from fleetd.dockerapi.errors import EngineSSHError
from fleetd.dockerapi.ssh import SSHConfig, SSHOptions
from fleetd.dockerapi.ssh_errors import channel_error

CONFIG = SSHConfig("web3.example.internal", 22, "deploy", SSHOptions(socket="/var/run/docker.sock"))


class _Result:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout


class _Conn:
    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.commands: list[str] = []

    async def run(self, command: str, check: bool = False) -> _Result:
        self.commands.append(command)
        if self.answer is None:
            raise asyncssh.ChannelOpenError(1, "exec refused")
        return _Result(self.answer + "\n")


async def explain(answer: str | None, code: int = 2) -> tuple[EngineSSHError, list[str]]:
    conn = _Conn(answer)
    err = await channel_error(CONFIG, cast(Any, conn), asyncssh.ChannelOpenError(code, "open failed"))
    assert isinstance(err, EngineSSHError)
    return err, conn.commands


@pytest.mark.parametrize(
    ("answer", "reason", "message"),
    [
        ("missing", "socket", "remote socket /var/run/docker.sock does not exist on web3.example.internal "
         "(checked as user 'deploy')"),
        ("denied", "socket", "user 'deploy' may not open the remote socket /var/run/docker.sock on "
         "web3.example.internal (permission denied): add 'deploy' to the socket's group (usually docker)"),
        ("not-a-socket", "socket", "/var/run/docker.sock on web3.example.internal is not a socket"),
        ("present", "forwarding", "sshd on deploy@web3.example.internal:22 would not connect to "
         "/var/run/docker.sock, which exists and 'deploy' may open"),
        (None, "socket", "sshd on web3.example.internal could not open the remote socket /var/run/docker.sock "
         "for user 'deploy' (open failed): it is missing, or that user may not open it"),
    ],
)  # fmt: skip
async def test_probe_answers(answer: str | None, reason: str, message: str) -> None:
    err, commands = await explain(answer)
    assert err.reason == reason and err.message.startswith(message), err.message
    assert err.url == "ssh://deploy@web3.example.internal:22"
    assert commands == [
        "sh -c 'if [ ! -e \"$1\" ]; then echo missing; elif [ ! -S \"$1\" ]; then echo not-a-socket; "
        "elif [ ! -r \"$1\" ] || [ ! -w \"$1\" ]; then echo denied; else echo present; fi' "
        "fleetd-probe /var/run/docker.sock"
    ]


async def test_administratively_prohibited_needs_no_probe() -> None:
    err, commands = await explain("missing", code=1)
    assert err.reason == "forwarding" and commands == []
    assert "'AllowStreamLocalForwarding yes' and 'AllowTcpForwarding local'" in err.message
