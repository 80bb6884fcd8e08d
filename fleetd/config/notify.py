"""``notify:`` in the config: webhooks, one JSON POST per matching fleet event (docs/live.md).

    notify:
      - name: pager                       # default notify-<index>; names the metrics and log lines
        url: https://hooks.example.com/x  # http or https
        token_file: /etc/fleetd/hook.token  # optional: sent as Authorization: Bearer <token>
        events: [host.down, container.died]   # default: every kind (WEBHOOK_KINDS)
        hosts: [docker01]                 # only these hosts (default: all)
        labels: [app=web]                 # container events only: labels that must match (k or k=v)
        timeout: 5s                       # one attempt
        retries: 5                        # attempts after the first, with backoff
        queue: 1000                       # deliveries waiting; past it the oldest is dropped (counted)

(Not the same as fleetd/service/notify.py, which is systemd's sd_notify.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fleetd.config.fields import Section, suggest
from fleetd.config.yamlsrc import Scalar

__all__ = ["NOTIFY_KEYS", "WEBHOOK_KINDS", "WebhookSettings", "read_notify"]

NOTIFY_KEYS = ("name", "url", "token_file", "events", "hosts", "labels", "timeout", "retries", "queue")
WEBHOOK_KINDS = ("host.down", "host.recovered", "container.died", "container.oom", "container.unhealthy")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_URL = re.compile(r"https?://[^\s/?#]+(?:[/?#]\S*)?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    name: str
    url: str
    token: str | None = field(default=None, repr=False)  # read from token_file at load; never logged
    events: frozenset[str] = frozenset(WEBHOOK_KINDS)
    hosts: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    timeout: float = 5.0
    retries: int = 5
    queue: int = 1000


def read_notify(top: Section, *, config_dir: Path) -> tuple[WebhookSettings, ...]:
    out: list[WebhookSettings] = []
    names: dict[str, int] = {}
    for index, node in enumerate(top.sequence("notify")):
        sec = Section.of(
            node, file=top.file, field=f"notify[{index}]", allowed=NOTIFY_KEYS, problems=top.problems
        )
        if sec is None:
            continue
        name = sec.text("name", coerce=True) or f"notify-{index}"
        if not _NAME.fullmatch(name):
            sec.problem("name", f"invalid name {name!r}: letters, digits, '_', '.', '-' (at most 63)")
        elif name in names:
            sec.problem("name", f"duplicate name {name!r} (first at line {names[name]})")
        else:
            names[name] = sec.line
        url = sec.text("url", required=True)
        if url is not None and not _URL.fullmatch(url.strip()):
            sec.problem("url", f"expected an http:// or https:// URL, got {url!r}")
            url = None
        token = _token(sec, config_dir)
        events = _strings(sec, "events", WEBHOOK_KINDS)
        default = WebhookSettings(name=name, url="")
        timeout = sec.duration("timeout")
        retries = sec.integer("retries", minimum=0, maximum=100)
        queue = sec.integer("queue", minimum=1, maximum=1_000_000)
        if url is None or sec.invalid:
            continue
        out.append(
            WebhookSettings(
                name=name,
                url=url.strip(),
                token=token,
                events=frozenset(events) if events else default.events,
                hosts=tuple(_strings(sec, "hosts", None)),
                labels=tuple(_strings(sec, "labels", None)),
                timeout=default.timeout if timeout is None else timeout,
                retries=default.retries if retries is None else retries,
                queue=queue or default.queue,
            )
        )
    return tuple(out)


def _strings(sec: Section, key: str, choices: tuple[str, ...] | None) -> list[str]:
    out: list[str] = []
    for item in sec.sequence(key):
        if not isinstance(item, Scalar) or not isinstance(item.value, str) or not item.value.strip():
            sec.problem(key, f"every entry of {key} must be a non-empty string")
            continue
        value = item.value.strip()
        if choices is not None and value not in choices:
            sec.problem(
                key, f"unknown event kind {value!r}{suggest(value, choices)} (kinds: {', '.join(choices)})"
            )
            continue
        out.append(value)
    return out


def _token(sec: Section, config_dir: Path) -> str | None:
    path = sec.readable_file("token_file", config_dir)
    if path is None:
        return None
    try:
        token = path.read_bytes().decode("utf-8").strip()
    except OSError as exc:
        sec.problem("token_file", f"cannot read {path}: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError:
        sec.problem("token_file", f"{path} is not valid UTF-8 text")
        return None
    if not token or any(c.isspace() for c in token):
        sec.problem("token_file", f"{path} must hold one token (no spaces), and it is empty or has several")
        return None
    return token
