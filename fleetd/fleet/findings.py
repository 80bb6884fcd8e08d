"""Security findings about the fleet, shown on host objects and counted in the summary.

- ``insecure_transport``: the daemon is reached over plain TCP (``tcp://`` or ``http://`` without
  TLS), like the classic ``tcp://0.0.0.0:2375`` — anyone who can reach that port is root there.
- ``tls_verify_disabled``: TLS without verifying the daemon's certificate.
- ``tls_cert_expiring``: a client or CA certificate expires within 30 days (or already has).

Certificates are read in a thread (never on the event loop), again every hour; findings are written
to each host's ``HostRecord.findings`` through the state's writer. The watch wakes up when the
inventory changes (the state's change signal) and at the top of every hour, never on a timer tick.
"""

from __future__ import annotations

import _ssl
import asyncio
import os
import re
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from fleetd.config.model import HostSettings
from fleetd.dockerapi import parse_endpoint
from fleetd.fleet.changes import Change, HostAdded, HostRemoved, HostUpdated
from fleetd.fleet.clients import tls_config
from fleetd.fleet.records import Finding, HostRecord
from fleetd.fleet.state import FleetState
from fleetd.util.timefmt import rfc3339

__all__ = ["CertInfo", "Finding", "FindingsWatch", "host_findings", "read_cert", "security_summary"]

_INVENTORY = (HostAdded, HostRemoved, HostUpdated)


def _is_inventory(change: Change) -> bool:
    return isinstance(change, _INVENTORY)

log = structlog.get_logger("fleetd.findings")

EXPIRY_WARNING = 30 * 86400.0
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_decode_cert: Callable[[str], dict[str, Any]] | None = getattr(_ssl, "_test_decode_cert", None)


@dataclass(frozen=True, slots=True)
class CertInfo:
    not_after: float | None  # the earliest expiry of the certificates in the file
    error: str | None = None
    read_at: float = 0.0


def read_cert(path: Path) -> CertInfo:
    """The earliest ``notAfter`` of the PEM certificates in ``path`` (blocking: call in a thread)."""
    now = time.time()
    if _decode_cert is None:
        return CertInfo(None, "this Python cannot decode certificates", now)
    try:
        blocks = _PEM.findall(path.read_bytes())
    except OSError as exc:
        return CertInfo(None, f"cannot read: {exc.strerror or exc}", now)
    if not blocks:
        return CertInfo(None, "no PEM certificate in the file", now)
    earliest: float | None = None
    with tempfile.TemporaryDirectory(prefix="fleetd-cert-") as tmp:
        one = os.path.join(tmp, "cert.pem")
        for block in blocks:
            with open(one, "wb") as f:
                f.write(block + b"\n")
            try:
                expires = ssl.cert_time_to_seconds(_decode_cert(one)["notAfter"])
            except (ssl.SSLError, KeyError, ValueError) as exc:
                return CertInfo(None, f"cannot decode a certificate: {exc}", now)
            earliest = expires if earliest is None else min(earliest, expires)
    return CertInfo(earliest, None, now)


def _cert_paths(settings: HostSettings) -> list[tuple[str, Path]]:
    tls = settings.tls
    if tls is None:
        return []
    return [(what, p) for what, p in (("client certificate", tls.cert), ("CA certificate", tls.ca)) if p]


def host_findings(settings: HostSettings, certs: dict[Path, CertInfo], now: float) -> tuple[Finding, ...]:
    found: list[Finding] = []
    try:
        endpoint = parse_endpoint(settings.url, tls_config(settings))
    except ValueError:
        return ()
    if endpoint.unix_path is None and endpoint.tls is None and endpoint.ssh is None:
        found.append(
            Finding(
                "insecure_transport",
                f"{settings.url} is plain TCP without TLS: anyone who can reach it controls the daemon; "
                "use TLS (https:// or tcp:// with tls:) or ssh://",
            )
        )
    if endpoint.tls is not None and not endpoint.tls.verify:
        found.append(Finding("tls_verify_disabled", "TLS is used without verifying the daemon's certificate"))
    for what, path in _cert_paths(settings):
        info = certs.get(path)
        if info is None or info.not_after is None or info.not_after - now > EXPIRY_WARNING:
            continue
        when = rfc3339(info.not_after)
        verb = "expired" if info.not_after <= now else "expires"
        found.append(
            Finding("tls_cert_expiring", f"the {what} {verb} on {when}", path=str(path), not_after=when)
        )
    return tuple(found)


def security_summary(records: Iterable[HostRecord]) -> dict[str, int]:
    """Hosts per finding code, from what :class:`FindingsWatch` put on the records."""
    counts = {"insecure_transport": 0, "tls_verify_disabled": 0, "tls_cert_expiring": 0, "hosts_flagged": 0}
    for record in records:
        if not record.findings:
            continue
        counts["hosts_flagged"] += 1
        for code in {f.code for f in record.findings}:
            counts[code] = counts.get(code, 0) + 1
    return counts


class FindingsWatch:
    """Keeps every host record's findings current: settings change on reload, certificates age."""

    def __init__(
        self,
        state: FleetState,
        *,
        reread_every: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.reread_every = reread_every
        self.clock = clock
        self.certs: dict[Path, CertInfo] = {}
        self._generation = 0
        self._applied: dict[str, tuple[object, ...]] = {}  # host -> what its findings were computed from

    async def refresh(self) -> None:
        """Read certificates not read yet (new hosts) or not for ``reread_every`` seconds."""
        now = self.clock()
        wanted = {p for r in self.state.records() for _, p in _cert_paths(r.settings)}
        due = sorted(
            p for p in wanted if p not in self.certs or now - self.certs[p].read_at > self.reread_every
        )
        for path in set(self.certs) - wanted:
            del self.certs[path]
        if not due:
            return
        infos = await asyncio.to_thread(lambda: {p: read_cert(p) for p in due})
        for path, info in infos.items():
            old = self.certs.get(path)
            if info.error and (old is None or old.error != info.error):
                log.warning("cannot check certificate expiry", path=str(path), error=info.error)
        self.certs.update(infos)
        self._generation += 1

    def apply(self) -> None:
        """Write findings for every host whose settings, certificates or hour changed."""
        now = self.clock()
        hour = int(now // 3600)
        seen: dict[str, tuple[object, ...]] = {}
        for record in self.state.records():
            key = (record, record.settings, self._generation, hour)
            seen[record.name] = key
            if self._applied.get(record.name) == key:
                continue
            self.state.set_findings(record.name, host_findings(record.settings, self.certs, now))
        self._applied = seen

    async def update(self) -> None:
        await self.refresh()
        self.apply()

    def _next_wake(self) -> float:
        """Seconds until the next hour starts (expiry warnings are judged per hour) or a re-read is due."""
        now = self.clock()
        to_hour = 3600.0 - now % 3600.0
        oldest = min((c.read_at for c in self.certs.values()), default=None)
        to_reread = oldest + self.reread_every - now if oldest is not None else to_hour
        return max(0.05, min(to_hour, to_reread) + 0.01)

    async def run(self) -> None:
        """Update on every inventory change and every hour; runs until cancelled."""
        # Only inventory changes wake it (not every container change of the fleet).
        with self.state.changes.subscribe(maxsize=64, wants=_is_inventory) as sub:
            while True:
                try:
                    await self.update()
                except Exception:
                    log.exception("updating security findings failed")
                try:
                    async with asyncio.timeout(self._next_wake()):
                        await sub.get()  # a batch with an inventory change, or the news that some were dropped
                except TimeoutError:
                    pass
