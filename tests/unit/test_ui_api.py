"""The dashboard's server side: its files with a strict CSP, whoami, and the list options it pages with."""

from __future__ import annotations

import re
from pathlib import Path

from fleetd.api.ui import CSP
from fleetd.ui import load_assets
from tests.fakes import FakeEngines, docker_29
from tests.unit.opskit import Tokens, host, settings, start_client

TOKENS = Tokens(watcher="viewer", ci="operator", root="admin")


def test_every_static_file_is_package_data() -> None:
    assets = load_assets()
    static = Path(__file__).resolve().parents[2] / "fleetd" / "ui" / "static"
    on_disk = {p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file()}
    assert set(assets) == on_disk and "index.html" in assets and "js/main.js" in assets
    assert assets["js/main.js"].content_type == "text/javascript"
    text = "\n".join(a.body.decode() for a in assets.values() if a.name.endswith((".js", ".html")))
    index = assets["index.html"].body.decode()
    modules = {n for n in assets if n.endswith(".js") and n != "js/main.js"}
    assert modules == set(re.findall(r'<link rel="modulepreload" href="/ui/assets/([^"]+)">', index))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in text, sink


async def test_the_page_and_its_files_carry_the_csp_and_need_no_token(tmp_path: Path) -> None:
    client = await start_client(settings(tmp_path, [], TOKENS.auth(protect_health=True)), ready=False)
    try:
        for path in ("/", "/ui/containers", "/ui/hosts/d1", "/ui/assets/js/main.js", "/ui/assets/app.css"):
            resp = await client.get(path)
            assert resp.status == 200, path
            assert resp.headers["Content-Security-Policy"] == CSP
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        page = await (await client.get("/ui/snapshots?old=1&new=2")).text()
        assert '<script type="module" src="/ui/assets/js/main.js">' in page and "<script>" not in page
        resp = await client.get("/ui/assets/js/main.js")
        again = await client.get("/ui/assets/js/main.js", headers={"If-None-Match": resp.headers["ETag"]})
        assert again.status == 304
        missing = await client.get("/ui/assets/nope.js")
        assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
        assert (await client.get("/api/v1/hosts")).status == 401  # the data still needs a token
    finally:
        await client.close()


async def test_whoami_says_who_and_what(tmp_path: Path) -> None:
    client = await start_client(settings(tmp_path, [], TOKENS.auth()))
    try:
        anon = await (await client.get("/api/v1/whoami")).json()  # no 401: the page learns to sign in
        assert anon["role"] is None and anon["reads"] is False and anon["auth"] is True
        assert anon["allowed"] == []
        viewer = await (await client.get("/api/v1/whoami", headers=TOKENS.header("watcher"))).json()
        assert viewer["name"] == "watcher" and viewer["role"] == "viewer" and viewer["reads"] is True
        assert "containers.list" in viewer["allowed"] and "container.stop" not in viewer["allowed"]
        operator = await (await client.get("/api/v1/whoami", headers=TOKENS.header("ci"))).json()
        assert {"container.stop", "container.logs", "batch"} <= set(operator["allowed"])
        assert "config.reload" not in operator["allowed"]
        admin = await (await client.get("/api/v1/whoami", headers=TOKENS.header("root"))).json()
        assert "config.reload" in admin["allowed"]
        assert set(admin["features"]) == {"events", "logs_follow"}
        wrong = await client.get("/api/v1/whoami", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
    finally:
        await client.close()


async def test_whoami_without_tokens_on_loopback_reads_but_never_operates(tmp_path: Path) -> None:
    client = await start_client(settings(tmp_path, []))
    try:
        me = await (await client.get("/api/v1/whoami")).json()
        assert me["reads"] is True and me["auth"] is False
        assert "containers.list" in me["allowed"] and "container.stop" not in me["allowed"]
    finally:
        await client.close()


async def test_containers_sort_and_host_label(tmp_path: Path, fake_engine: FakeEngines) -> None:
    a = await fake_engine(docker_29(containers=6, seed=1))
    b = await fake_engine(docker_29(containers=4, seed=2))
    hosts = [host("a", a.url, labels={"env": "prod"}), host("b", b.url, labels={"env": "dev"})]
    client = await start_client(settings(tmp_path, hosts))
    try:

        async def listed(**params: str) -> list[dict[str, str]]:
            resp = await client.get("/api/v1/containers", params=params)
            assert resp.status == 200, await resp.text()
            return list((await resp.json())["containers"])

        by_image = await listed(sort="image")
        assert [c["image"] for c in by_image] == sorted(c["image"] for c in by_image)
        newest = await listed(sort="-created")
        assert [c["created"] for c in newest] == sorted((c["created"] for c in newest), reverse=True)
        page = await listed(sort="name", limit="3", offset="3")
        assert [c["name"] for c in page] == sorted(c["name"] for c in await listed())[3:6]
        assert {c["host"] for c in await listed(host_label="env=prod")} == {"a"}
        assert await listed(host_label="env=nowhere") == []
        assert {c["host"] for c in await listed(host_label="env")} == {"a", "b"}
        bad = await client.get("/api/v1/containers", params={"sort": "size"})
        assert bad.status == 400 and "sort" in (await bad.json())["error"]["message"]
    finally:
        await client.close()
