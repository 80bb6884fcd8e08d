"""``gc:``: how fleetd paces Python's cyclic garbage collector once the fleet is up (fleetd/service/gcpolicy.py)."""

from __future__ import annotations

from dataclasses import dataclass

from fleetd.config.fields import Section

__all__ = ["GC_KEYS", "GcSettings", "read_gc"]

GC_KEYS = ("young_every", "full_every")

YOUNG_EVERY_MIN = 0.05
YOUNG_EVERY_MAX = 60.0
FULL_EVERY_MIN = 10.0


@dataclass(frozen=True, slots=True)
class GcSettings:
    # A young collection on this period, its survivors frozen; 0: CPython's automatic collector.
    young_every: float = 0.5
    # The frozen objects collected too (reference cycles among them freed) on this period; 0: never.
    full_every: float = 3600.0


def read_gc(top: Section) -> GcSettings:
    default = GcSettings()
    sec = top.section("gc", GC_KEYS)
    if sec is None:
        return default
    young = sec.duration("young_every", allow_zero=True, maximum=YOUNG_EVERY_MAX)
    if young is not None and 0 < young < YOUNG_EVERY_MIN:
        sec.problem("young_every", f"must be 0 (automatic) or at least {YOUNG_EVERY_MIN * 1000:g}ms, got {young:g}s")
        young = None
    full = sec.duration("full_every", allow_zero=True)
    if full is not None and 0 < full < FULL_EVERY_MIN:
        sec.problem("full_every", f"must be 0 (never) or at least {FULL_EVERY_MIN:g}s, got {full:g}s")
        full = None
    return GcSettings(
        young_every=default.young_every if young is None else young,
        full_every=default.full_every if full is None else full,
    )
