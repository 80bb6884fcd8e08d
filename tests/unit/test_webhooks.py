"""Webhooks: the notify: config, fleet events → notices, delivery with retries, and bounded queues
(a receiver that hangs delays nobody else)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry

from fleetd.config.notify import WEBHOOK_KINDS, WebhookSettings
from fleetd.fleet.feed import FleetEvent, FleetFeed
from fleetd.fleet.records import ContainerRecord
from fleetd.webhooks import WebhookService, notices_for
from fleetd.webhooks.notices import matches
from tests.harness import eventually
from tests.webhookkit import Receiver

if TYPE_CHECKING:
    from conftest import ConfigDir


def _container(
    state: str = "exited", status: str = "Exited (137) 1 second ago", **kw: object
) -> ContainerRecord:
    fields: dict[str, object] = {
        "host": "d1",
        "id": "c" * 64,
        "name": "web1",
        "names": ["web1"],
        "image": "fleet/busybox:test",
        "image_id": "sha256:1",
        "command": "sleep 1000",
        "state": state,
        "status": status,
        "health": "none",
        "created": None,
        "labels": {"app": "web"},
        "ports": [],
        "observed_at": None,
    }
    fields.update(kw)
    return ContainerRecord(**fields)  # type: ignore[arg-type]


def _event(type_: str, **kw: object) -> FleetEvent:
    return FleetEvent(id="e.1", seq=1, type=type_, host=str(kw.pop("host", "d1")), time=1_764_756_000.0, **kw)  # type: ignore[arg-type]


def test_notify_entries_are_read_with_the_token_from_its_file(cfg: ConfigDir) -> None:
    (cfg.root / "hook.token").write_text("s3cret-token\n")
    settings = cfg.load(
        "notify:\n"
        "  - name: pager\n"
        "    url: https://hooks.example.internal/fleetd\n"
        "    token_file: hook.token\n"
        "    events: [host.down, container.died]\n"
        "    hosts: [d1]\n"
        "    labels: [app=web]\n"
        "    timeout: 2s\n"
        "    retries: 1\n"
        "    queue: 10\n"
        "  - url: http://127.0.0.1:9/x\n"
    )
    pager, other = settings.notify
    assert (pager.name, pager.url, pager.token) == (
        "pager",
        "https://hooks.example.internal/fleetd",
        "s3cret-token",
    )
    assert (
        pager.events == {"host.down", "container.died"}
        and pager.hosts == ("d1",)
        and pager.labels == ("app=web",)
    )
    assert (pager.timeout, pager.retries, pager.queue) == (2.0, 1, 10)
    assert "s3cret" not in repr(pager)
    assert other.name == "notify-1" and other.events == frozenset(WEBHOOK_KINDS) and other.token is None


def test_notify_problems_name_file_line_and_field(cfg: ConfigDir) -> None:
    problems = cfg.problems(
        "notify:\n"
        "  - url: ftp://nope\n"
        "  - url: http://a/b\n"
        "    events: [host.dwn]\n"
        "  - url: http://a/b\n"
        "    token_file: missing.token\n"
        "  - name: x\n"
        "    url: http://a\n"
        "  - name: x\n"
        "    url: http://b\n"
    )
    text = [f"{p.line}: {p.field}: {p.message}" for p in problems]
    assert any(t.startswith("2: notify[0].url: expected an http:// or https:// URL") for t in text), text
    assert any(
        t.startswith("4: notify[1].events: unknown event kind 'host.dwn'; did you mean 'host.down'?")
        for t in text
    ), text
    assert any(t.startswith("6: notify[2].token_file: cannot read") for t in text), text
    assert any(t.startswith("9: notify[4].name: duplicate name 'x' (first at line 7)") for t in text), text
    assert len(problems) == 4


def test_fleet_events_become_the_notices_people_ask_for() -> None:
    down = notices_for(
        _event("host.changed", before="up", after="down", record={"last_error": "connection refused"})
    )
    assert [(n.kind, n.before, n.after, n.error) for n in down] == [
        ("host.down", "up", "down", "connection refused")
    ]
    [back] = notices_for(_event("host.changed", before="down", after="up"))
    assert (back.kind, back.error) == ("host.recovered", None)
    assert notices_for(_event("host.changed", before="unknown", after="up")) == []
    assert notices_for(_event("host.changed", before="down", after="error")) == []

    [died] = notices_for(
        _event("container.changed", container=_container(), fields=("state",), action="die", exit_code=137)
    )
    assert (died.kind, died.exit_code, died.action) == ("container.died", 137, "die")
    assert died.container is not None and died.container.name == "web1"
    [polled] = notices_for(
        _event("container.changed", container=_container(status="Exited (3) now"), fields=("state", "status"))
    )
    assert (polled.kind, polled.exit_code) == ("container.died", 3)  # from Status when no event said
    oom_died = notices_for(
        _event("container.changed", container=_container(), fields=("state",), action="oom")
    )
    assert [n.kind for n in oom_died] == ["container.oom", "container.died"]
    # seen by a lab dockerd: the change that carries "oom" may not list "state" (the row was new)
    oom_new = notices_for(
        _event("container.changed", container=_container(), fields=("status",), action="oom")
    )
    assert [(n.kind, n.exit_code) for n in oom_new] == [("container.oom", None), ("container.died", 137)]
    running = _container(state="running", status="Up 2 minutes")
    [oom] = notices_for(_event("container.changed", container=running, fields=("status",), action="oom"))
    assert oom.kind == "container.oom"  # a process of it was killed, the container lives on
    unhealthy = _container(state="running", status="Up 1 minute (unhealthy)", health="unhealthy")
    [sick] = notices_for(
        _event(
            "container.changed",
            container=unhealthy,
            fields=("health", "status"),
            action="health_status: unhealthy",
        )
    )
    assert sick.kind == "container.unhealthy"
    assert (
        notices_for(
            _event(
                "container.changed", container=_container(state="running", status="Up"), fields=("status",)
            )
        )
        == []
    )
    assert notices_for(_event("container.added", container=_container())) == []
    # created, started and dead between two refreshes: first seen dead, the death as its action
    gone = _container(state="exited", status="Exited (137) 1 second ago")
    assert [n.kind for n in notices_for(_event("container.added", container=gone, action="oom"))] == [
        "container.oom",
        "container.died",
    ]
    [quick] = notices_for(_event("container.added", container=gone, action="die", exit_code=3))
    assert (quick.kind, quick.exit_code) == ("container.died", 3)
    assert notices_for(_event("container.added", container=gone, action="create")) == []

    hook = WebhookSettings(
        name="w", url="http://x", events=frozenset({"container.died"}), hosts=("d1",), labels=("app=web",)
    )
    assert matches(hook, died)
    assert not matches(hook, down[0])  # not a kind it asked for
    assert not matches(
        hook,
        notices_for(_event("container.changed", host="d2", container=_container(), fields=("state",)))[0],
    )
    assert not matches(
        hook,
        notices_for(
            _event("container.changed", container=_container(labels={"app": "db"}), fields=("state",))
        )[0],
    )


async def _service(feed: FleetFeed, *hooks: WebhookSettings) -> tuple[WebhookService, CollectorRegistry]:
    registry = CollectorRegistry()
    service = WebhookService(hooks, lambda: feed.subscribe(maxsize=1000), registry=registry, backoff=0.01)
    await service.start()
    return service, registry


def _count(registry: CollectorRegistry, what: str, hook: str) -> float:
    return registry.get_sample_value(f"fleetd_webhooks_{what}_total", {"webhook": hook}) or 0.0


async def test_a_matching_fleet_event_is_posted_with_its_token() -> None:
    feed = FleetFeed()
    async with Receiver() as rx, Receiver() as only_containers:
        service, registry = await _service(
            feed,
            WebhookSettings(name="all", url=rx.url, token="tok-123"),
            WebhookSettings(name="containers", url=only_containers.url, events=frozenset({"container.died"})),
        )
        try:
            feed.publish("host.changed", "d1", before="up", after="down", record={"last_error": "timeout"})
            await eventually(lambda: len(rx.received) == 1, timeout=15.0)
            body, headers = rx.received[0], rx.headers[0]
            assert body["kind"] == "host.down" and body["host"] == "d1" and body["error"] == "timeout"
            assert body["event_id"].endswith(".1") and body["time"].endswith("Z")
            assert headers["Authorization"] == "Bearer tok-123" and headers["X-Fleetd-Event"] == "host.down"
            assert headers["Content-Type"] == "application/json" and len(headers["X-Fleetd-Delivery"]) == 16
            await asyncio.sleep(0.2)
            assert only_containers.received == []
            assert _count(registry, "sent", "all") == 1.0
        finally:
            await service.aclose()


async def test_retries_with_backoff_then_gives_up_and_counts() -> None:
    feed = FleetFeed()
    async with Receiver(statuses=[503, 500]) as flaky, Receiver(statuses=[404]) as refusing:
        service, registry = await _service(
            feed,
            WebhookSettings(name="flaky", url=flaky.url, retries=3),
            WebhookSettings(name="refusing", url=refusing.url, retries=3),
            WebhookSettings(name="nobody", url="http://127.0.0.1:9/hook", retries=1, timeout=1.0),
        )
        try:
            feed.publish("host.changed", "d1", before="down", after="up")
            await eventually(lambda: len(flaky.received) == 1, timeout=15.0)
            assert flaky.attempts == 3  # two failures, then the delivery
            await eventually(lambda: _count(registry, "failed", "refusing") == 1.0, timeout=15.0)
            assert refusing.attempts == 1  # a 404 is not retried
            await eventually(
                lambda: _count(registry, "failed", "nobody") == 1.0, timeout=15.0
            )  # connection refused, twice
            # the receiver records the body before fleetd has read its answer and counted the send
            await eventually(lambda: _count(registry, "sent", "flaky") == 1.0, timeout=15.0)
            assert _count(registry, "sent", "refusing") == 0.0
        finally:
            await service.aclose()


async def test_a_hanging_receiver_delays_nobody_and_its_overflow_is_counted() -> None:
    feed = FleetFeed()
    async with Receiver(hang=True) as hung, Receiver() as healthy:
        service, registry = await _service(
            feed,
            WebhookSettings(name="hung", url=hung.url, timeout=30.0, retries=0, queue=5),
            WebhookSettings(name="healthy", url=healthy.url),
        )
        try:
            started = time.monotonic()
            for i in range(20):
                status = ("down", "up")[i % 2]
                feed.publish("host.changed", f"h{i}", before=("up", "down")[i % 2], after=status)
            assert time.monotonic() - started < 2.0  # publishing never waited on anyone (no await in it)
            await eventually(lambda: len(healthy.received) == 20, timeout=15.0)
            assert [b["host"] for b in healthy.received] == [f"h{i}" for i in range(20)]  # in order
            await eventually(lambda: hung.attempts == 1, timeout=15.0)
            # one notice is in flight at the hung receiver, at most 5 wait, the oldest others were dropped
            pending = service.senders["hung"].pending
            assert pending <= 5 and pending + _count(registry, "dropped", "hung") + 1 == 20
            assert _count(registry, "dropped", "healthy") == 0.0
        finally:
            await service.aclose()
        assert _count(registry, "dropped", "hung") == 19.0  # the waiting ones are dropped on stop, counted


async def test_reconfigure_keeps_unchanged_receivers_and_adds_new_ones() -> None:
    feed = FleetFeed()
    async with Receiver() as a, Receiver() as b:
        keep = WebhookSettings(name="a", url=a.url)
        service, _ = await _service(feed, keep)
        try:
            before = service.senders["a"]
            await service.reconfigure((keep, WebhookSettings(name="b", url=b.url)))
            assert service.senders["a"] is before
            feed.publish("host.changed", "d1", before="up", after="error")
            await eventually(lambda: len(a.received) == 1 and len(b.received) == 1, timeout=15.0)
            await service.reconfigure(())
            assert service.senders == {}
        finally:
            await service.aclose()


async def test_without_receivers_the_feed_is_not_subscribed_and_no_notice_is_derived(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Start-up announces ~40 containers per host; with no webhook configured the service does not
    subscribe, so the feed stays quiet (makes no event) and no notice is derived."""
    import fleetd.webhooks.service as service_module

    derived: list[str] = []
    real = service_module.notices_for

    def counting(event: FleetEvent) -> list[object]:
        derived.append(event.host)
        return real(event)  # type: ignore[return-value]

    monkeypatch.setattr(service_module, "notices_for", counting)
    feed = FleetFeed()
    async with Receiver() as a:
        service = WebhookService((), lambda: feed.subscribe(maxsize=1000), registry=CollectorRegistry(), backoff=0.01)
        await service.start()
        try:
            assert feed.quiet and feed.subscribers == 0
            await service.reconfigure((WebhookSettings(name="a", url=a.url),))
            assert not feed.quiet and feed.subscribers == 1
            feed.publish("host.changed", "d1", before="up", after="error")
            await eventually(lambda: len(a.received) == 1, timeout=15.0)
            assert derived == ["d1"] and a.received[0]["kind"] == "host.down"
            await service.reconfigure(())  # the last receiver gone: the subscription is closed
            assert feed.subscribers == 0
            feed.publish("host.changed", "d2", before="up", after="error")
            await asyncio.sleep(0.1)
            assert derived == ["d1"]
        finally:
            await service.aclose()
