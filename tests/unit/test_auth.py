"""Authentication and roles: the policy table, tokens, refusals, rate limiting, the exposure check."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fleetd.api.app import create_app, route_index
from fleetd.api.auth import AuthGuard
from fleetd.api.routes import Access, template_key
from fleetd.cli import main as cli_main
from fleetd.config.exposure import exposure_problem, is_loopback
from fleetd.config.model import AuthSettings, TokenSettings
from fleetd.runtime import Fleet
from fleetd.util.ratelimit import ClientBuckets
from tests.unit.opskit import Tokens, settings, start_client

INDEX = route_index()
POLICY = INDEX.policy
rule_for = INDEX.rule_for

# Every mutating endpoint, with a body that would pass validation, so only auth can refuse it.
MUTATING: list[tuple[str, str, Any]] = [
    ("POST", "/api/v1/hosts/h/containers?name=x", {"Image": "fleet/busybox:test"}),
    ("POST", "/api/v1/containers/h/web/start", None),
    ("POST", "/api/v1/containers/h/web/stop", None),
    ("POST", "/api/v1/containers/h/web/restart", None),
    ("POST", "/api/v1/containers/h/web/kill", None),
    ("DELETE", "/api/v1/containers/h/web", None),
    ("POST", "/api/v1/hosts/h/images/pull?image=busybox", None),
    ("POST", "/api/v1/hosts/h/images/load", b"tar"),
    ("POST", "/api/v1/actions", {"action": "stop", "selector": {"name": "*"}}),
]


def test_every_registered_route_has_a_policy(tmp_path: Path) -> None:
    app = create_app(Fleet(settings(tmp_path, [])))
    missing = [
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
        if rule_for(route.method, route.resource.canonical) is None
    ]
    assert missing == []


def test_policy_table_levels() -> None:
    public = {t for (m, t), r in POLICY.items() if r.access is Access.PUBLIC}
    shell = {t for (m, t), r in POLICY.items() if r.shell}
    assert public == {"/healthz", "/readyz", "/metrics"} | shell
    assert shell == {"/", "/ui/assets/{name}", "/ui/{view}"}  # the dashboard's files, no data
    assert rule_for("POST", "/api/v1/snapshots").access is Access.VIEWER  # type: ignore[union-attr]
    for method, path in [
        ("DELETE", "/api/v1/snapshots/{snapshot_id}"),
        ("POST", "/api/v1/snapshots/prune"),
        ("POST", "/api/v1/reload"),
        ("GET", "/api/v1/audit"),
    ]:
        assert rule_for(method, path).access is Access.ADMIN  # type: ignore[union-attr]
    assert rule_for("HEAD", "/api/v1/hosts/{name}") == rule_for("GET", "/api/v1/hosts/{host}")
    assert template_key("head", "/a/{x}/b") == ("GET", "/a/{}/b")
    assert rule_for("PUT", "/api/v1/hosts") is None


async def test_without_tokens_reads_are_open_on_loopback_and_operations_say_how_to_enable(
    tmp_path: Path,
) -> None:
    client = await start_client(settings(tmp_path, []))
    try:
        assert (await client.get("/api/v1/hosts")).status == 200
        assert (await client.get("/api/v1/summary")).status == 200
        for method, path, body in MUTATING:
            resp = await client.request(method, path, json=body if isinstance(body, dict) else None)
            assert resp.status == 403, (method, path)
            err = (await resp.json())["error"]
            assert err["code"] == "operations_disabled"
            assert "auth.tokens" in err["message"]
        resp = await client.get("/api/v1/audit")
        assert resp.status == 403 and "auth.tokens" in (await resp.json())["error"]["message"]
    finally:
        await client.close()


@pytest.mark.parametrize("anonymous_read", [False, True])
async def test_without_tokens_on_a_public_address_reads_need_anonymous_read(
    tmp_path: Path, anonymous_read: bool
) -> None:
    cfg = settings(tmp_path, [], AuthSettings(anonymous_read=anonymous_read), listen_host="0.0.0.0")
    client = await start_client(cfg)
    try:
        resp = await client.get("/api/v1/hosts")
        if anonymous_read:
            assert resp.status == 200
        else:
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == "auth_not_configured"
        assert (await client.get("/healthz")).status == 200
        assert (await client.post("/api/v1/actions", json={})).status == 403
    finally:
        await client.close()


async def test_token_roles(tmp_path: Path) -> None:
    tokens = Tokens(watcher="viewer", ci="operator", root="admin")
    client = await start_client(settings(tmp_path, [], tokens.auth()))
    try:
        resp = await client.get("/api/v1/hosts")
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        resp = await client.get("/api/v1/hosts", headers={"Authorization": "Bearer not-a-token"})
        assert resp.status == 401
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
        resp = await client.get("/api/v1/hosts", headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert resp.status == 401
        for name in ("watcher", "ci", "root"):
            assert (await client.get("/api/v1/hosts", headers=tokens.header(name))).status == 200
        resp = await client.post("/api/v1/actions", json={}, headers=tokens.header("watcher"))
        assert resp.status == 403
        err = (await resp.json())["error"]
        assert (
            err["code"] == "insufficient_role"
            and "watcher" in err["message"]
            and "operator" in err["message"]
        )
        resp = await client.post("/api/v1/actions", json={}, headers=tokens.header("ci"))
        assert resp.status == 400  # through auth, refused by validation
        assert (await client.get("/api/v1/audit", headers=tokens.header("ci"))).status == 403
        resp = await client.get("/api/v1/audit", headers=tokens.header("root"))
        assert resp.status == 200  # allowed: the audit log is stored even without snapshots
        actions = [(e["actor"], e["action"]) for e in (await resp.json())["entries"]]
        assert ("ci", "batch") in actions and ("watcher", "batch") in actions
        # Health and metrics stay public; the spec is a read.
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status == 200, path
        assert (await client.get("/api/v1/openapi.json")).status == 401
    finally:
        await client.close()


async def test_protect_health_and_anonymous_read_with_tokens(tmp_path: Path) -> None:
    tokens = Tokens(watcher="viewer")
    auth = tokens.auth(protect_health=True, anonymous_read=True)
    client = await start_client(settings(tmp_path, [], auth), ready=False)
    try:
        assert (await client.get("/healthz")).status == 200  # anonymous reads cover health too
        assert (await client.get("/api/v1/hosts")).status == 200
        bad = {"Authorization": "Bearer wrong"}
        assert (await client.get("/api/v1/hosts", headers=bad)).status == 401  # never silently downgraded
        assert (await client.post("/api/v1/actions", json={})).status == 401
    finally:
        await client.close()
    client = await start_client(settings(tmp_path, [], tokens.auth(protect_health=True)), ready=False)
    try:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status == 401, path
            assert (await client.get(path, headers=tokens.header("watcher"))).status in (200, 503), path
    finally:
        await client.close()


async def test_failed_attempts_are_rate_limited_per_client(tmp_path: Path) -> None:
    tokens = Tokens(ci="operator")
    client = await start_client(settings(tmp_path, [], tokens.auth()))
    try:
        statuses = [
            (await client.get("/api/v1/hosts", headers={"Authorization": f"Bearer guess-{i}"})).status
            for i in range(12)
        ]
        assert statuses[:10] == [401] * 10
        assert statuses[10:] == [429, 429]
        resp = await client.get("/api/v1/hosts", headers=tokens.header("ci"))
        assert resp.status == 429  # a blocked address cannot learn that a guess was right
        assert int(resp.headers["Retry-After"]) >= 1
        # Requests without a token are not guesses: still answered normally.
        assert (await client.get("/api/v1/hosts")).status == 401
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


async def test_wrong_tokens_never_lock_out_a_token_proven_from_that_address(tmp_path: Path) -> None:
    tokens = Tokens(admin="admin")
    client = await start_client(settings(tmp_path, [], tokens.auth()))
    try:
        assert (await client.get("/api/v1/hosts", headers=tokens.header("admin"))).status == 200
        for i in range(30):  # a stale script with an old token, from the admin's own address
            wrong = await client.get("/api/v1/hosts", headers={"Authorization": f"Bearer old-{i}"})
            assert wrong.status in (401, 429)
            assert (await client.get("/api/v1/hosts", headers=tokens.header("admin"))).status == 200, i
        guess = await client.get("/api/v1/hosts", headers={"Authorization": "Bearer guess"})
        assert guess.status == 429  # guessing stays blocked
    finally:
        await client.close()


def test_failure_limiter_refills_and_isolates_addresses() -> None:
    now = [1000.0]
    limiter = ClientBuckets(burst=3, per_minute=6.0, max_clients=2, clock=lambda: now[0])
    assert [limiter.spend("a") for _ in range(3)] == [False, False, True]
    assert limiter.retry_after("a") == pytest.approx(10.0)  # one unit every 10 s
    assert limiter.retry_after("b") is None
    now[0] += 10.0
    assert limiter.retry_after("a") is None
    limiter.spend("b")
    limiter.spend("c")  # over max_clients: the least recent ("a") is forgotten
    assert len(limiter) == 2 and limiter.retry_after("a") is None


def test_verify_compares_every_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"t{i}" for i in range(5)]
    auth = AuthSettings(
        tokens=tuple(
            TokenSettings(name=n, token_sha256=hashlib.sha256(n.encode()).hexdigest(), role="viewer")
            for n in names
        )
    )
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    guard = AuthGuard()
    found = guard.verify(auth, "t0")
    assert found is not None and found.name == "t0"
    assert len(calls) == 5  # the first matched, all were compared
    assert guard.verify(auth, "nope") is None


def test_exposure_check() -> None:
    base = settings(Path("/etc/fleetd"), [])
    assert exposure_problem(base) is None
    for host in ("0.0.0.0", "192.0.2.10", "::", "fleet.example"):
        exposed = settings(Path("/etc/fleetd"), [], listen_host=host)
        message = exposure_problem(exposed)
        assert message is not None and "auth.tokens" in message and "anonymous_read" in message
        assert (
            exposure_problem(settings(Path("/e"), [], AuthSettings(anonymous_read=True), listen_host=host))
            is None
        )
        assert exposure_problem(settings(Path("/e"), [], Tokens(a="admin").auth(), listen_host=host)) is None
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")


def test_check_config_refuses_a_public_listen_address_without_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "fleetd.yaml"
    cfg.write_text("listen: 0.0.0.0:8080\nsnapshots: {enabled: false}\nhosts: []\n")
    assert cli_main(["check-config", "--config", str(cfg)]) == 2
    assert "auth.tokens" in capsys.readouterr().err
    cfg.write_text(
        "listen: 0.0.0.0:8080\nsnapshots: {enabled: false}\nauth: {anonymous_read: true}\nhosts: []\n"
    )
    assert cli_main(["check-config", "--config", str(cfg)]) == 0


async def test_unmatched_routes_keep_their_404_and_405(tmp_path: Path) -> None:
    tokens = Tokens(ci="operator")
    client: TestClient[Any, Any] = await start_client(settings(tmp_path, [], tokens.auth()))
    try:
        assert (await client.post("/api/v1/nothing-here")).status == 404
        assert (await client.put("/api/v1/hosts")).status == 405
    finally:
        await client.close()
