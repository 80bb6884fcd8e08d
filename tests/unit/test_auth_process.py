"""``fleetd run`` as a process: tokens never reach its log; a public address without tokens is refused."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from tests.fakes import FakeEngines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleetd",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_fleetd_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    cfg = tmp_path / "fleetd.yaml"
    cfg.write_text("listen: 0.0.0.0:18080\nsnapshots: {enabled: false}\nhosts: []\n")
    proc = await _run(cfg)
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    text = err.decode()
    assert "auth.tokens" in text and "anonymous_read" in text and "not started" in text


async def test_tokens_never_appear_in_the_log(tmp_path: Path, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=6, seed=21)
    running = next(c for c in eng.state.containers.values() if c.running)
    admin, operator = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    (tmp_path / "admin.token").write_text(admin + "\n")
    op_sha = hashlib.sha256(operator.encode()).hexdigest()
    port = _free_port()
    cfg = tmp_path / "fleetd.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\nlog: {{level: debug, format: json}}\n"
        f"snapshots: {{enabled: true, path: {tmp_path / 'fleetd.db'}}}\n"
        "auth:\n  tokens:\n"
        f"    - {{name: root, role: admin, token_file: {tmp_path / 'admin.token'}}}\n"
        f"    - {{name: ci-bot, role: operator, token_sha256: {op_sha}}}\n"
        f"hosts:\n  - {{name: h1, url: '{eng.url}'}}\n"
    )
    proc = await _run(cfg)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "fleetd did not become ready"
                await asyncio.sleep(0.1)
            wrong = "Bearer " + operator[:-2] + "xx"
            calls = [
                ("GET", "/api/v1/hosts", wrong, 401),
                ("POST", "/api/v1/actions", wrong, 401),
                ("POST", f"/api/v1/containers/h1/{running.name}/stop", f"Bearer {operator}", 200),
                ("POST", "/api/v1/actions", f"Bearer {operator}", 400),
                ("GET", "/api/v1/audit", f"Bearer {admin}", 200),
                ("GET", "/api/v1/audit", f"Bearer {operator}", 403),
                ("GET", f"/api/v1/hosts?token={operator}", f"Bearer {operator}", 400),
                ("POST", "/api/v1/hosts/h1/containers", f"Bearer {admin}", 400),
            ]
            for method, path, header, status in calls:
                async with http.request(method, base + path, headers={"Authorization": header}) as resp:
                    assert resp.status == status, (method, path, await resp.text())
            async with http.get(f"{base}/api/v1/audit", headers={"Authorization": f"Bearer {admin}"}) as resp:
                entries = (await resp.json())["entries"]
            assert [e["actor"] for e in entries][:3] == ["root", "ci-bot", "ci-bot"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    log = out.decode() + err.decode()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    audited = [e for e in events if e.get("event") == "audit"]
    assert [e["actor"] for e in audited] == ["anonymous", "ci-bot", "ci-bot", "root"]
    assert any(e.get("event") == "authentication failed" for e in events)
    for secret in (admin, operator, operator[:-2] + "xx", op_sha, hashlib.sha256(admin.encode()).hexdigest()):
        assert secret not in log
        assert secret[:16] not in log
