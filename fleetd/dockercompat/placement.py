"""Where ``docker create``/``run`` goes: classic Swarm's constraints and affinities, or ``--name h/web``.

- ``-e constraint:node==d2``, ``constraint:env==prod`` (an inventory or daemon label, or one of
  storagedriver, kernelversion, operatingsystem, ostype), ``!=``, globs, ``/regex/``, and ``~`` for
  a soft (preferred) rule; the same as the ``com.docker.swarm.constraints`` label (a JSON list).
- ``-e affinity:image==busybox``, ``affinity:container==web1``, ``affinity:<label>==<value>``.
- ``--name d2/web`` pins the container to d2 and names it ``web`` there.
Without rules, up hosts that already have the image come first, then those with fewest containers.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fleetd.dockercompat.errors import DockerAPIError
from fleetd.fleet.records import HostRecord, HostStatus
from fleetd.ops.images import image_matches

__all__ = ["Placement", "Rule", "choose_host", "extract_rules", "has_image"]

CONSTRAINTS_LABEL = "com.docker.swarm.constraints"
AFFINITIES_LABEL = "com.docker.swarm.affinities"
_EXPR = re.compile(r"^([A-Za-z0-9_.\-/]+)\s*(==|!=)\s*(~?)(.*)$")


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str  # constraint | affinity
    key: str
    negate: bool
    soft: bool
    value: str
    text: str

    def value_matches(self, candidate: str) -> bool:
        if len(self.value) > 2 and self.value.startswith("/") and self.value.endswith("/"):
            try:
                return re.search(self.value[1:-1], candidate) is not None
            except re.error:
                return False
        return fnmatch.fnmatchcase(candidate.lower(), self.value.lower())


def _parse(kind: str, text: str) -> Rule:
    m = _EXPR.match(text.strip())
    if m is None:
        raise DockerAPIError(400, f"invalid {kind} {text!r}: expected key==value or key!=value")
    key, op, soft, value = m.groups()
    return Rule(kind, key.lower(), op == "!=", bool(soft), value.strip(), text.strip())


@dataclass(slots=True)
class Placement:
    rules: list[Rule] = field(default_factory=list)
    pinned: str | None = None  # --name host/name
    name: str | None = None  # the name on the host


def extract_rules(body: dict[str, Any], name: str | None, known_hosts: set[str]) -> Placement:
    """Take the rules out of the create body (Env entries are removed; labels record them)."""
    placement = Placement(name=name)
    if name and "/" in name.lstrip("/"):
        host, _, rest = name.lstrip("/").partition("/")
        if host not in known_hosts:
            raise DockerAPIError(404, f"no host named {host!r} in fleetd's inventory (from --name {name})")
        placement.pinned, placement.name = host, rest
    env = body.get("Env")
    kept: list[str] = []
    found: dict[str, list[str]] = {"constraint": [], "affinity": []}
    for item in env if isinstance(env, list) else []:
        text = str(item)
        kind, sep, expr = text.partition(":")
        if sep and kind in found and "=" not in kind:
            found[kind].append(expr)
        else:
            kept.append(text)
    if isinstance(env, list):
        body["Env"] = kept
    labels = body.get("Labels") if isinstance(body.get("Labels"), dict) else {}
    for kind, label in (("constraint", CONSTRAINTS_LABEL), ("affinity", AFFINITIES_LABEL)):
        raw = labels.get(label) if labels else None
        if isinstance(raw, str) and raw:
            try:
                listed = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                raise DockerAPIError(400, f"label {label} must be a JSON list of expressions") from None
            found[kind] += [str(x) for x in listed if str(x) not in found[kind]] if isinstance(listed, list) else []
        if found[kind]:
            labels = dict(labels or {})
            labels[label] = msgspec.json.encode(found[kind]).decode()
    if labels:
        body["Labels"] = labels
    for kind, exprs in found.items():
        placement.rules += [_parse(kind, e) for e in exprs]
    return placement


def has_image(record: HostRecord, image: str) -> bool:
    ref = image if ":" in image.rpartition("/")[2] or "@" in image else f"{image}:latest"
    return any(image_matches(i, ref) or image_matches(i, image) for i in record.images or ())


def _host_labels(record: HostRecord) -> dict[str, str]:
    labels = {k.lower(): v for k, v in record.settings.labels.items()}
    facts = record.facts
    if facts is not None:
        labels.setdefault("storagedriver", facts.storage_driver)
        labels.setdefault("kernelversion", facts.kernel_version)
        labels.setdefault("operatingsystem", facts.operating_system)
        labels.setdefault("ostype", facts.os_type)
    if record.info_raw is not None:
        try:
            info = msgspec.json.decode(record.info_raw)
            for item in info.get("Labels") or []:
                k, _, v = str(item).partition("=")
                labels.setdefault(k.lower(), v)
        except (msgspec.DecodeError, AttributeError):
            pass
    return labels


def _holds(rule: Rule, record: HostRecord) -> bool:
    if rule.kind == "constraint":
        if rule.key == "node":
            candidates = [record.name] + ([record.facts.engine_id] if record.facts else [])
        else:
            value = _host_labels(record).get(rule.key)
            candidates = [value] if value is not None else []
        hit = any(rule.value_matches(c) for c in candidates)
    elif rule.key == "image":
        hit = has_image(record, rule.value) or any(rule.value_matches(t) for i in record.images or () for t in i.tags)
    elif rule.key == "container":
        hit = any(rule.value_matches(n) or c.id.startswith(rule.value) for c in record.containers for n in c.names)
    else:
        hit = any(rule.key in c.labels and rule.value_matches(c.labels[rule.key]) for c in record.containers)
    return hit != rule.negate


def choose_host(records: list[HostRecord], placement: Placement, image: str) -> HostRecord:
    """The best up host for a new container, or a 400 saying which rule no host satisfies."""
    up = [r for r in records if r.status is HostStatus.UP and r.settings.enabled]
    if placement.pinned is not None:
        pinned = [r for r in records if r.name == placement.pinned]
        if not pinned or pinned[0].status is not HostStatus.UP:
            state = pinned[0].status.value if pinned else "unknown"
            raise DockerAPIError(503, f"host {placement.pinned} is {state}; cannot create a container there")
        up = pinned
    if not up:
        raise DockerAPIError(503, "no host is up: cannot place a new container")
    candidates = up
    for rule in (r for r in placement.rules if not r.soft):
        kept = [r for r in candidates if _holds(rule, r)]
        if not kept:
            raise DockerAPIError(
                400,
                f"unable to find a host that satisfies the {rule.kind} {rule.text} "
                f"(up hosts: {', '.join(r.name for r in up)})",
            )
        candidates = kept
    soft = [r for r in placement.rules if r.soft]

    def rank(r: HostRecord) -> tuple[int, int, int, str]:
        return (-sum(_holds(s, r) for s in soft), 0 if has_image(r, image) else 1, len(r.containers), r.name)

    return min(candidates, key=rank)
