"""Matching containers and images: labels, names, image references. One rule each, for the whole program."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from fleetd.fleet.records import ContainerRecord, ImageRecord

__all__ = [
    "CONTAINER_STATES",
    "HEALTH_STATES",
    "container_image_matches",
    "container_name_matches",
    "image_id_matches",
    "image_matches",
    "image_name_matches",
    "label_matches",
    "name_literal",
    "name_matches",
]

#: Container states as the Engine reports them.
CONTAINER_STATES = frozenset({"created", "restarting", "running", "removing", "paused", "exited", "dead"})
HEALTH_STATES = frozenset({"healthy", "unhealthy", "starting", "none"})


def label_matches(labels: Mapping[str, str], selectors: Iterable[str]) -> bool:
    """``k`` means the label exists; ``k=v`` means it has that value; all must hold."""
    for sel in selectors:
        key, eq, value = sel.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def name_pattern_matches(name: str, pattern: str) -> bool:
    """The one meaning of ``name`` everywhere fleetd takes one (the container list and its index, merged
    logs, batch selectors): the name exactly, or as a shell glob (:func:`fnmatch.fnmatchcase`: ``web-*``,
    ``*web*``, ``db-?``, ``[ab]pi``), never as a bare substring: ``web`` does not match ``webhook``."""
    return fnmatchcase(name, pattern)


def container_name_matches(c: ContainerRecord, pattern: str) -> bool:
    """One of the container's names matches ``pattern`` (:func:`name_pattern_matches`)."""
    return any(name_pattern_matches(n, pattern) for n in (c.names or [c.name]))


_GLOB_META = re.compile(r"[*?]")


def name_literal(pattern: str) -> str:
    """The longest run of plain characters every name matching the glob ``pattern`` contains (for a
    substring pre-filter); ``""`` when there is none (``*``)."""
    best = ""
    for part in _GLOB_META.split(pattern):
        part = part.split("[", 1)[0]  # a character class: what follows it is not needed to be exact
        if len(part) > len(best):
            best = part
    return best


def _repository_of(tag: str) -> str | None:
    """``nginx:1.27`` → ``nginx``; None when the reference has no tag (``registry:5000/app``)."""
    repo, colon, tail = tag.rpartition(":")
    return repo if colon and "/" not in tail else None


def _id_prefix_matches(image_id: str, reference: str) -> bool:
    short = reference.removeprefix("sha256:")
    return len(short) >= 12 and image_id.removeprefix("sha256:").startswith(short)


def _names_of(name: str) -> tuple[str, ...]:
    """An image name and its repository (``registry:5000/team/app:2`` → itself and ``…/app``)."""
    repo = _repository_of(name)
    return (name,) if repo is None else (name, repo)


def name_matches(name: str, reference: str) -> bool:
    """``reference`` is the name, its repository (``nginx`` ↔ ``nginx:1.27``), or either without a
    registry or namespace prefix, cut at a ``/`` (``app:2`` and ``team/app`` ↔ ``registry:5000/team/app:2``,
    ``busybox`` ↔ ``fleet/busybox:test``; never ``nginx`` ↔ ``mynginx``)."""
    return any(n == reference or n.endswith("/" + reference) for n in _names_of(name))


def image_name_matches(image: str, reference: str) -> bool:
    """A container's image name against ``reference`` (see :func:`name_matches`)."""
    return name_matches(image, reference)


def image_id_matches(image_id: str, reference: str) -> bool:
    """A container's image id against ``reference``: the id, or a prefix of 12+ hex digits."""
    return image_id == reference or _id_prefix_matches(image_id, reference)


def container_image_matches(c: ContainerRecord, reference: str) -> bool:
    """The container runs ``reference``: the same image name, its repository (``nginx`` matches
    ``nginx:1.27``), its id, or a unique id prefix of 12+ hex digits (with or without ``sha256:``)."""
    return image_name_matches(c.image, reference) or image_id_matches(c.image_id, reference)


def image_matches(image: ImageRecord, reference: str) -> bool:
    """``nginx:1.27`` (a tag), ``nginx`` (any tag of that repository), an id or a unique id prefix
    (12+ hex digits, with or without ``sha256:``), or a ``name@sha256:...`` digest."""
    if reference in image.tags or reference in image.digests:
        return True
    if any(name_matches(tag, reference) for tag in image.tags):
        return True
    return _id_prefix_matches(image.id, reference)
