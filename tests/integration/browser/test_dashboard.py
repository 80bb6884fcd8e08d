"""The dashboard in a real Chromium, in front of real dockerd daemons and fake Engines.

Every check is against the truth: the daemons (docker CLI) or fleetd's own API. Each test's page fails
it on any console error or uncaught exception (see conftest.page). Screenshots for the README are
written to docs/img/.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.integration.browser.conftest import Dashboard, screenshot, sign_in
from tests.integration.lab import BUSYBOX_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.browser]

# sleep as PID 1 ignores SIGTERM; this one stops at once, so stopping from the page takes no 10 s.
QUICK = [
    "sh",
    "-c",
    "trap 'echo stopping-$HOSTNAME; exit 0' TERM; echo hello-from-$HOSTNAME; while :; do sleep 0.2; done",
]


def run(board: Dashboard, daemon: str, name: str, *args: str) -> str:
    board.made.append((daemon, name))
    done = board.lab.daemons[daemon].docker(
        "run", "-d", "--network", "none", "--name", name, *args, BUSYBOX_IMAGE, *QUICK
    )
    return done.stdout.strip()


def daemon_state(board: Dashboard, daemon: str, name: str) -> str:
    done = board.lab.daemons[daemon].docker("inspect", "--format", "{{.State.Status}}", name)
    return done.stdout.strip()


def api(page: Any, board: Dashboard, path: str, who: str = "watcher") -> Any:
    resp = page.request.get(board.url + path, headers={"Authorization": f"Bearer {board.token(who)}"})
    assert resp.ok, f"{path}: {resp.status} {resp.text()}"
    return resp.json()


def mark_document(page: Any) -> None:
    page.evaluate("window.__sameDocument = 'yes'")


def same_document(page: Any) -> bool:
    return page.evaluate("window.__sameDocument") == "yes"


def test_overview_shows_each_hosts_true_state_and_follows_an_outage(page: Any, dashboard: Dashboard) -> None:
    ids = {
        n: dashboard.lab.daemons[n].docker("info", "--format", "{{.ID}}").stdout.strip() for n in ("d1", "d2")
    }
    lab_state = "duplicate" if ids["d1"] == ids["d2"] else "up"  # the lab's dockerds share key.json
    expected = {
        "d1": lab_state,
        "d2": lab_state,
        "fake-up": "up",
        "fake-down": "up",
        "fake-error": "error",
        "old-box": "disabled",
    }
    sign_in(page, dashboard, "watcher")
    for name, state in expected.items():
        expect(page.locator(f'a.tile[data-host="{name}"]')).to_have_attribute(
            "data-state", state, timeout=10_000
        )
    expect(page.locator("a.tile")).to_have_count(len(expected))
    expect(page.locator('a.tile[data-host="fake-error"]')).to_contain_text("error")
    if lab_state == "duplicate":
        expect(page.locator('a.tile[data-host="d1"]')).to_contain_text("duplicate engine id")
    api_hosts = {h["name"]: h for h in api(page, dashboard, "/api/v1/hosts")["hosts"]}
    assert api_hosts["fake-error"]["state"] == "error" and api_hosts["old-box"]["state"] == "disabled"
    assert api_hosts["fake-up"]["insecure_transport"]  # plain tcp://: the finding is flagged on the tile
    expect(page.locator('a.tile[data-host="fake-up"]')).to_contain_text("plaintext TCP")
    expect(page.locator('#summary li[data-key="hosts"] .n')).to_have_text("6")

    mark_document(page)
    dashboard.bg.run(dashboard.fakes["fake-down"].aclose())  # the engine goes away
    down = page.locator('a.tile[data-host="fake-down"]')
    expect(down).to_have_attribute("data-state", "down", timeout=10_000)
    expect(down).to_contain_text("stale")  # its last containers are kept, marked stale
    expect(page.locator("#feed")).to_contain_text("fake-down")
    assert same_document(page), "the page reloaded"
    screenshot(page, "overview")

    page.select_option("#group", "env")
    expect(page.locator("section.group h2")).to_have_text(["env=prod (2)", "env=staging (4)"])
    page.fill("#host-label", "rack=r3")
    expect(page.locator("a.tile")).to_have_count(3)
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"group": ["env"], "label": ["rack=r3"]}


def test_containers_table_follows_the_daemons_and_the_url_holds_the_filters(
    page: Any, dashboard: Dashboard
) -> None:
    name = f"ui-live-{secrets.token_hex(3)}"
    sign_in(page, dashboard, "watcher", "/ui/containers?host=d1")
    expect(page.locator("#f-host")).to_have_value("d1")
    expect(page.locator("#page-info")).to_contain_text("of")
    hosts_shown = page.locator("#rows tr").evaluate_all("rows => rows.map(r => r.dataset.host)")
    assert hosts_shown and set(hosts_shown) == {"d1"}
    mark_document(page)

    run(dashboard, "d1", name, "--label", "ui.test=live")
    started = time.monotonic()
    row = page.locator(f'#rows tr[data-name="{name}"]')
    expect(row).to_have_count(1, timeout=2_000)  # the bound: within 2 s of `docker run`
    appeared = time.monotonic() - started
    expect(row).to_have_attribute("data-state", "running")
    dashboard.lab.daemons["d1"].docker("stop", name)
    expect(row).to_have_attribute("data-state", "exited", timeout=5_000)
    assert daemon_state(dashboard, "d1", name) == "exited"
    assert same_document(page), "the table was reloaded"
    print(f"container row appeared {appeared:.2f}s after docker run returned")

    # filters → URL
    page.select_option("#f-state", "exited")
    page.fill("#f-name", name)
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(page).to_have_url(re.compile("name="))
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"host": ["d1"], "state": ["exited"], "name": [name]}
    # URL → filters, and the same answer as the API's
    page.goto(f"{dashboard.url}/ui/containers?label=ui.test%3Dlive&sort=-name")
    expect(page.locator("#f-label")).to_have_value("ui.test=live")
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(page.locator('th[data-col="name"]')).to_have_attribute("aria-sort", "descending")
    truth = api(page, dashboard, "/api/v1/containers?label=ui.test%3Dlive")["containers"]
    assert [c["name"] for c in truth] == [name]

    # sorting by a column header: the server's order, and the URL says so
    page.goto(f"{dashboard.url}/ui/containers")
    expect(page.locator("#page-info")).to_contain_text("of")
    page.locator('th[data-col="image"] button').click()
    expect(page).to_have_url(re.compile(r"sort=image"))
    expect(page.locator('th[data-col="image"]')).to_have_attribute("aria-sort", "ascending")
    shown = page.locator('#rows td[data-col="image"]').evaluate_all("cells => cells.map(c => c.textContent)")
    api_order = [
        c["image"] for c in api(page, dashboard, "/api/v1/containers?sort=image&limit=100")["containers"]
    ]
    assert shown == api_order and shown == sorted(shown)
    screenshot(page, "containers")


def test_a_viewer_sees_no_action_buttons_and_an_operators_stop_reaches_the_daemon(
    page: Any, dashboard: Dashboard
) -> None:
    name = f"ui-op-{secrets.token_hex(3)}"
    run(dashboard, "d2", name, "--label", "ui.test=op")
    api_wait = time.monotonic() + 10
    while not api(page, dashboard, f"/api/v1/containers?host=d2&name={name}")["total"]:
        assert time.monotonic() < api_wait, "fleetd never listed the container"
        time.sleep(0.2)
    path = f"/ui/containers/d2/{name}"

    sign_in(page, dashboard, "watcher", path)
    expect(page.locator("main h1")).to_contain_text(name)
    expect(page.locator("#labels")).to_contain_text("ui.test")
    expect(page.locator("#container-actions button")).to_have_count(0)
    expect(page.locator("#inspect-btn")).to_have_count(0)
    expect(page.locator("#logs")).to_have_count(0)  # logs need operator
    expect(page.locator("#nav-actions")).to_be_hidden()
    page.goto(f"{dashboard.url}/ui/containers?host=d2")
    expect(page.locator("#rows tr").first).to_be_visible()
    expect(page.locator("#rows input[type=checkbox]")).to_have_count(0)

    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    sign_in(page, dashboard, "ci", path)
    buttons = page.locator("#container-actions button")
    expect(buttons).to_have_text(["start", "stop", "restart", "remove"])
    logs_followed = api(page, dashboard, "/api/v1/whoami", "ci")["features"]["logs_follow"]
    if logs_followed:
        expect(page.locator("#logs-note")).to_have_text("following live", timeout=10_000)
        expect(page.locator("#logs")).to_contain_text("hello-from-", timeout=10_000)
    page.click('#container-actions button[data-action="stop"]')
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text(f"stop {name} on d2")
    page.click("#confirm-yes")
    expect(page.locator("#action-result")).to_have_text("stop: done", timeout=20_000)
    assert daemon_state(dashboard, "d2", name) == "exited"
    expect(page.locator("main h1")).to_contain_text("exited", timeout=5_000)

    page.click("#inspect-btn")  # the daemon's own answer, on demand
    expect(page.locator("#inspect")).to_contain_text('"Id"', timeout=10_000)
    inspected = json.loads(page.locator("#inspect").text_content() or "{}")
    assert inspected["Name"] == f"/{name}" and inspected["State"]["Status"] == "exited"
    expect(page.locator("#logs")).to_contain_text("hello-from-", timeout=10_000)
    if logs_followed:  # the line the container wrote while stopping arrived on the open stream
        expect(page.locator("#logs")).to_contain_text("stopping-", timeout=10_000)
        expect(page.locator("#logs-note")).to_contain_text("stream ended")

    # a cancelled confirmation changes nothing
    page.click('#container-actions button[data-action="start"]')
    page.click("#confirm-no")
    page.wait_for_timeout(300)
    assert daemon_state(dashboard, "d2", name) == "exited"


def test_a_label_holding_html_is_shown_as_text_and_runs_nothing(page: Any, dashboard: Dashboard) -> None:
    name = f"ui-xss-{secrets.token_hex(3)}"
    payload = "<img src=x onerror=\"window.__pwned=1;console.error('pwned')\">"
    key = "<b>bold</b>"
    run(dashboard, "d1", name, "--label", f"evil={payload}", "--label", f"{key}=1")
    sign_in(page, dashboard, "watcher", f"/ui/containers?name={name}")
    expect(page.locator("#rows tr")).to_have_count(1, timeout=5_000)
    page.click(f'#rows tr[data-name="{name}"] td[data-col="name"] a')
    labels = page.locator("#labels")
    expect(labels).to_contain_text(payload)
    expect(labels).to_contain_text(key)
    assert page.locator("main img, main b").count() == 0
    page.goto(f"{dashboard.url}/?label={payload}")  # a hostile URL is as harmless
    expect(page.locator("#host-label")).to_have_value(payload)
    page.wait_for_timeout(500)
    assert page.evaluate("window.__pwned") is None


def wait_listed(page: Any, board: Dashboard, host: str, name: str, state: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        found = api(page, board, f"/api/v1/containers?host={host}&name={name}")["containers"]
        if any(c["name"] == name and c["state"] == state for c in found):
            return
        assert time.monotonic() < deadline, f"fleetd never listed {host}/{name} as {state}: {found}"
        time.sleep(0.2)


def test_snapshot_diff_names_what_changed_and_exports(page: Any, dashboard: Dashboard) -> None:
    tag = secrets.token_hex(3)
    kept, added = f"ui-snap-kept-{tag}", f"ui-snap-new-{tag}"
    run(dashboard, "d2", kept)
    wait_listed(page, dashboard, "d2", kept, "running")
    sign_in(page, dashboard, "watcher", "/ui/snapshots")
    page.click("#take")
    expect(page.locator("#snap-status")).to_contain_text("taken", timeout=10_000)
    run(dashboard, "d2", added, "--label", "ui.test=snap")
    dashboard.lab.daemons["d2"].docker("stop", kept)
    wait_listed(page, dashboard, "d2", added, "running")
    wait_listed(page, dashboard, "d2", kept, "exited")
    page.click("#take")
    expect(page.locator("#snap-status")).to_contain_text("taken", timeout=10_000)
    newest = api(page, dashboard, "/api/v1/snapshots?limit=2")["snapshots"]
    new_id, old_id = newest[0]["id"], newest[1]["id"]
    expect(page.locator("#snapshots tbody tr").first).to_have_attribute("data-id", str(new_id))
    expect(page.locator("#history svg polyline")).to_have_count(5)

    with page.expect_download() as dl:
        page.click(f'#snapshots tr[data-id="{new_id}"] button[data-format="csv"]')
    download = dl.value
    assert download.suggested_filename == f"fleetd-snapshot-{new_id}.csv"
    assert added in Path(download.path()).read_text(encoding="utf-8")

    page.click("#compare")
    expect(page).to_have_url(re.compile(rf"old={old_id}&new={new_id}"))
    d2 = page.locator('#diff section[data-host="d2"]')
    expect(d2.locator(f'li[data-kind="added"][data-name="{added}"]')).to_contain_text(f"{added} added")
    expect(d2.locator(f'li[data-kind="changed"][data-name="{kept}"]')).to_contain_text(
        "state: running → exited"
    )
    truth = api(page, dashboard, f"/api/v1/snapshots/{new_id}/diff?against={old_id}")
    groups = {g["host"]: g for g in truth["containers"]}
    assert added in {c["name"] for c in groups["d2"]["added"]}
    assert kept in {c["name"] for c in groups["d2"]["changed"]}
    screenshot(page, "diff")


def test_csp_tokens_keyboard_phone_and_dark(page: Any, dashboard: Dashboard) -> None:
    requests: list[Any] = []
    page.on("request", lambda r: requests.append(r))
    resp = page.goto(dashboard.url + "/")
    assert resp is not None
    csp = resp.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "frame-ancestors 'none'", "require-trusted-types-for 'script'"):  # fmt: skip
        assert directive in csp
    assert "unsafe" not in csp and "http" not in csp
    expect(page.locator("#signin")).to_be_visible()  # auth is configured: sign in first
    token = dashboard.token("watcher")
    page.fill("#signin-token", token)
    page.press("#signin-token", "Enter")
    expect(page.locator("#who")).to_have_text("watcher (viewer)")
    expect(page.locator("a.tile").first).to_be_visible()
    api_calls = [r for r in requests if "/api/" in r.url]
    assert api_calls and all(token not in r.url for r in requests)
    assert all(
        r.headers.get("authorization") == f"Bearer {token}" for r in api_calls if "whoami" not in r.url
    )
    assert page.evaluate("sessionStorage.getItem('fleetd.token')") == token
    assert page.evaluate("localStorage.length") == 0
    assets = [r for r in requests if "/ui/assets/" in r.url]
    assert assets and all(r.response().headers["content-security-policy"] == csp for r in assets)

    # the browser enforces it: an HTML sink is refused
    refused = page.evaluate(
        "() => { try { document.body.innerHTML = '<b>x</b>'; return 'allowed'; } catch (e) { return e.name; } }"
    )
    assert refused == "TypeError"
    assert any("TrustedHTML" in e for e in page.errors)
    page.errors.clear()  # that violation was the point

    # keyboard: skip link first, then the navigation; Enter follows a link without a reload
    mark_document(page)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(3):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Containers"
    page.keyboard.press("Enter")
    expect(page.locator("main h1")).to_have_text("Containers")
    assert same_document(page)

    # phone width: nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(dashboard.url + "/")
    expect(page.locator("a.tile").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # dark: the page follows prefers-color-scheme
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light != dark and dark == "rgb(18, 21, 26)"


def test_the_page_reads_the_fleet_event_stream_with_its_bearer_header(
    page: Any, dashboard: Dashboard
) -> None:
    """Events published on fleetd's feed reach the page through GET /api/v1/events (fetch, not EventSource)."""
    fleet = dashboard.served.fleet
    sign_in(page, dashboard, "watcher")
    expect(page.locator("#live")).to_have_text("live")
    record = fleet.state.find_container("d1", "web1")
    assert record is not None

    async def publish() -> None:
        fleet.feed.publish(
            "container.changed", "d1", container=record, fields=("state",), action="die", exit_code=137
        )

    dashboard.bg.run(publish())
    expect(page.locator("#feed")).to_contain_text("d1: web1 die (exit 137)", timeout=5_000)


def test_batch_action_by_selector_shows_the_dry_run_first_then_each_result(
    page: Any, dashboard: Dashboard
) -> None:
    tag = secrets.token_hex(3)
    names = [f"ui-batch-{tag}-{i}" for i in range(2)]
    for daemon, name in zip(("d1", "d2"), names, strict=True):
        run(dashboard, daemon, name, "--label", f"ui.batch={tag}")
    for daemon, name in zip(("d1", "d2"), names, strict=True):
        wait_listed(page, dashboard, daemon, name, "running")
    sign_in(page, dashboard, "ci", "/ui/actions")
    page.select_option("#b-action", "stop")
    page.fill("#b-label", f"ui.batch={tag}")
    page.click("#batch-dry")
    result = page.locator("#batch-result")
    expect(result).to_contain_text("Dry run: stop would be sent to 2 container(s)")
    expect(result.locator("tbody tr")).to_have_count(2)
    assert {daemon_state(dashboard, d, n) for d, n in zip(("d1", "d2"), names, strict=True)} == {"running"}
    assert parse_qs(urlsplit(page.url).query) == {"action": ["stop"], "label": [f"ui.batch={tag}"]}

    page.click("#batch-run")
    expect(page.locator("#confirm-text")).to_contain_text("stop 2 container(s)")
    page.click("#confirm-yes")
    expect(result).to_contain_text("stop: 2 of 2 ok, 0 failed", timeout=30_000)
    outcomes = result.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.host, r.dataset.outcome])"
    )
    assert sorted(outcomes) == [["d1", "ok"], ["d2", "ok"]]
    assert {daemon_state(dashboard, d, n) for d, n in zip(("d1", "d2"), names, strict=True)} == {"exited"}

    # the same from a selection in the table: restart both (a start would be bounded by these hosts'
    # 0.4 s poll timeout, which a loaded machine's dockerd can miss; restart waits for its stop grace too)
    page.goto(f"{dashboard.url}/ui/containers?label=ui.batch%3D{tag}")
    expect(page.locator("#rows tr")).to_have_count(2)
    for box in page.locator("#rows input[type=checkbox]").all():
        box.check()
    expect(page.locator("#sel-h")).to_have_text("2 selected")
    page.select_option("#sel-action", "restart")
    page.click("#sel-dry")
    expect(page.locator("#sel-result")).to_contain_text("Dry run: restart would be sent to 2 container(s)")
    page.click("#sel-run")
    page.click("#confirm-yes")
    expect(page.locator("#sel-result")).to_contain_text("restart: 2 of 2 ok, 0 failed", timeout=30_000)
    assert {daemon_state(dashboard, d, n) for d, n in zip(("d1", "d2"), names, strict=True)} == {"running"}
