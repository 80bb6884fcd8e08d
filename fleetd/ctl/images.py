"""``fleetd images``: every image of the fleet once, with the hosts having it (like ``docker images``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from fleetd.ctl.base import ago
from fleetd.ctl.client import FleetClient
from fleetd.ctl.output import Column, Table, make_console, print_json

__all__ = ["human_size", "image_rows", "images_command"]

Item = dict[str, Any]

COLUMNS: Final = (
    Column("REPOSITORY"), Column("TAG"), Column("IMAGE ID", shrink=False), Column("CREATED"),
    Column("SIZE", justify="right", shrink=False), Column("HOSTS"),
)  # fmt: skip


def human_size(n: int) -> str:
    """Decimal units, as ``docker images`` shows them: ``1.98MB``."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{n}B"


def image_rows(images: list[Item]) -> list[tuple[str, str, Item]]:
    """(repository, tag, image) for each tag of each image; ``<none>`` for untagged ones."""
    rows: list[tuple[str, str, Item]] = []
    for image in images:
        tags = image.get("tags") or []
        if not tags:
            rows.append(("<none>", "<none>", image))
        for tag in tags:
            repo, sep, version = tag.rpartition(":")
            if not sep or "/" in version:
                repo, version = tag, "<none>"
            rows.append((repo, version, image))
    return rows


async def images_command(args: argparse.Namespace, api: FleetClient) -> int:
    params = [("host", h) for h in args.host or []]
    if args.reference:
        params.append(("reference", args.reference))
    body, _ = await api.get("/api/v1/images", params)
    images = list(body["images"])
    if args.quiet:
        ids = dict.fromkeys(
            i["id"] if args.no_trunc else i["id"].removeprefix("sha256:")[:12] for i in images
        )
        sys.stdout.write("".join(f"{i}\n" for i in ids))
    elif args.json:
        print_json(images)
    else:
        table = Table(COLUMNS)
        for repo, tag, image in image_rows(images):
            hosts = image.get("hosts") or []
            table.add(
                repo,
                tag,
                image["id"] if args.no_trunc else image["id"].removeprefix("sha256:")[:12],
                ago(image.get("created")),
                human_size(int(image.get("size") or 0)),
                f"{len(hosts)}: {', '.join(hosts)}",
            )
        table.render(make_console())
    if body.get("unlisted_hosts") and not args.json and not args.quiet:
        unlisted = ", ".join(body["unlisted_hosts"])
        print(f"fleetd: images of {unlisted} not listed yet (unknown there, not absent)", file=sys.stderr)
    return 0
