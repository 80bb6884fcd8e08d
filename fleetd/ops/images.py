"""Images across the fleet, from the aggregate the poller keeps (``HostRecord.images``)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from fleetd.fleet.match import image_matches
from fleetd.fleet.records import HostRecord

__all__ = [
    "LOAD_TIMEOUT",
    "PULL_TIMEOUT",
    "SEARCH_TIMEOUT",
    "FleetImage",
    "fleet_images",
    "image_matches",
    "registry_unreachable",
]

#: Registry round trips and image transfers take far longer than a poll.
SEARCH_TIMEOUT = 30.0
PULL_TIMEOUT = 600.0
LOAD_TIMEOUT = 600.0


class FleetImage(msgspec.Struct):
    id: str
    tags: list[str]
    digests: list[str]
    size: int
    created: str | None
    hosts: list[str]


def fleet_images(
    records: Iterable[HostRecord], *, hosts: set[str] | None = None, reference: str | None = None
) -> tuple[list[FleetImage], list[str]]:
    """Each image once by id, with the hosts having it, newest first; and the hosts whose images
    were never listed (so an absent image there means "unknown", not "not present")."""
    by_id: dict[str, FleetImage] = {}
    unlisted: list[str] = []
    for record in sorted(records, key=lambda r: r.name):
        if hosts is not None and record.name not in hosts:
            continue
        if record.images is None:
            if record.settings.enabled:
                unlisted.append(record.name)
            continue
        for image in record.images:
            if reference is not None and not image_matches(image, reference):
                continue
            seen = by_id.get(image.id)
            if seen is None:
                by_id[image.id] = FleetImage(
                    id=image.id,
                    tags=list(image.tags),
                    digests=list(image.digests),
                    size=image.size,
                    created=image.created,
                    hosts=[record.name],
                )
            else:
                seen.hosts.append(record.name)
                seen.tags.extend(t for t in image.tags if t not in seen.tags)
                seen.digests.extend(d for d in image.digests if d not in seen.digests)
    found = sorted(by_id.values(), key=lambda i: (i.created or "", i.id), reverse=True)
    for each in found:
        each.tags.sort()
        each.digests.sort()
    return found, unlisted


_NO_REGISTRY = (
    "dial tcp",
    "no such host",
    "lookup ",
    "connection refused",
    "network is unreachable",
    "i/o timeout",
    "tls handshake timeout",
    "context deadline exceeded",
    "client.timeout exceeded",
    "temporary failure in name resolution",
)


def registry_unreachable(message: str) -> bool:
    """Whether a daemon's error says it could not reach the registry at all."""
    low = message.lower()
    return any(marker in low for marker in _NO_REGISTRY)
