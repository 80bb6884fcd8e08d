"""``filters=`` as the docker CLI (``{"k":{"v":true}}``) and docker-py (``{"k":["v"]}``) send it,
and the container filters fleetd applies to the aggregate itself (``node=`` included)."""

from __future__ import annotations

import fnmatch
import re

import msgspec

from fleetd.dockercompat.errors import DockerAPIError
from fleetd.fleet.match import CONTAINER_STATES
from fleetd.fleet.records import ContainerRecord
from fleetd.fleet.state import label_matches

__all__ = ["CONTAINER_FILTERS", "Filters", "match_container", "parse_filters"]

Filters = dict[str, list[str]]

CONTAINER_FILTERS = frozenset(
    {"id", "name", "label", "status", "node", "ancestor", "exited", "health", "before", "since", "is-task"}
)
_STATUSES = CONTAINER_STATES
_EXITED = re.compile(r"^Exited \((-?\d+)\)")


def parse_filters(raw: str | None, allowed: frozenset[str]) -> Filters:
    if not raw:
        return {}
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise DockerAPIError(400, f"invalid filter: {raw!r} is not JSON") from None
    if not isinstance(doc, dict):
        raise DockerAPIError(400, "invalid filter: expected a JSON object")
    out: Filters = {}
    for key, value in doc.items():
        if key not in allowed:
            raise DockerAPIError(400, f"invalid filter '{key}' (filters fleetd supports: {', '.join(sorted(allowed))})")
        if isinstance(value, dict):  # {"v": true}: the CLI's form
            values = [str(v) for v, on in value.items() if on]
        elif isinstance(value, list):  # ["v"]: docker-py's form
            values = [str(v) for v in value]
        elif isinstance(value, str):
            values = [value]
        else:
            raise DockerAPIError(400, f"invalid filter '{key}': expected a list or an object")
        out[key] = values
    return out


def _name_match(pattern: str, names: list[str]) -> bool:
    """moby: an exact match or an RE2 search, on the name with and without its leading slash."""
    try:
        rx = re.compile(pattern)
    except re.error:
        rx = None
    return any(n == pattern or (rx is not None and rx.search(n) is not None) for n in names)


def _image_match(c: ContainerRecord, ref: str) -> bool:
    if ref in (c.image, c.image_id) or c.image_id.removeprefix("sha256:").startswith(ref.removeprefix("sha256:")):
        return len(ref.removeprefix("sha256:")) >= 4 or ref in (c.image, c.image_id)
    repo = c.image.rpartition(":")[0] if ":" in c.image.rpartition("/")[2] else c.image
    return ref == repo


def _exit_code(c: ContainerRecord) -> str | None:
    m = _EXITED.match(c.status)
    return m.group(1) if m else None


def match_container(c: ContainerRecord, f: Filters) -> bool:
    """Every key must hold; values of one key are alternatives (moby's semantics)."""
    for key, values in f.items():
        if not values:
            continue
        if key == "id":
            ok = any(c.id.startswith(v) for v in values)
        elif key == "name":
            names = [*c.names, *(f"/{n}" for n in c.names), *(f"{c.host}/{n}" for n in c.names),
                     *(f"/{c.host}/{n}" for n in c.names)]
            ok = any(_name_match(v, names) for v in values)
        elif key == "label":
            ok = all(label_matches(c.labels, [v]) for v in values)
        elif key == "status":
            for v in values:
                if v not in _STATUSES:
                    raise DockerAPIError(400, f"invalid filter 'status={v}'")
            ok = c.state in values
        elif key == "node":
            ok = any(fnmatch.fnmatchcase(c.host, v) for v in values)
        elif key == "ancestor":
            ok = any(_image_match(c, v) for v in values)
        elif key == "exited":
            ok = _exit_code(c) in values
        elif key == "health":
            ok = c.health in values
        elif key == "is-task":
            ok = all(v in ("false", "0") for v in values)
        else:  # before/since are applied by the caller (they compare with another container)
            ok = True
        if not ok:
            return False
    return True
