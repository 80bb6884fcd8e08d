"""How much of a daemon's answer the client reads, per endpoint, before it gives up.

The caps are enforced while the body arrives (and from ``Content-Length`` before any of it),
so a daemon that sends gigabytes costs at most one cap of memory, never the whole answer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MiB", "ReadLimits", "format_size"]

MiB = 1024 * 1024


def format_size(size: int) -> str:
    """``67108864`` → ``"64 MiB"``, ``1536`` → ``"1.5 KiB"``: how caps are named in messages."""
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """The largest answer read from each kind of endpoint, in bytes.

    ``hint`` is appended to a cap's error message to say how to raise it; ``{name}`` in it is
    replaced by the cap's name (``containers``, ``images``, ``info``, ``other``)."""

    containers: int = 64 * MiB  # GET /containers/json: ~3 KiB per container
    images: int = 32 * MiB  # GET /images/json
    info: int = 4 * MiB  # GET /info, /version, /_ping
    other: int = 16 * MiB  # inspect, create, search, error bodies, ...
    hint: str = ""

    def for_path(self, path: str) -> tuple[str, int]:
        """The cap's name and size for an unversioned API path."""
        if path == "/containers/json":
            return "containers", self.containers
        if path == "/images/json":
            return "images", self.images
        if path in ("/info", "/version", "/_ping"):
            return "info", self.info
        return "other", self.other

    def advice(self, name: str) -> str:
        return self.hint.replace("{name}", name) if self.hint else ""
