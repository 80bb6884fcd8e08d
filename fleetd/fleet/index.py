"""Indexes over the fleet's containers, kept by FleetState's writer from the changes it announces.

A query used to test every predicate on every container in Python (40,000 records: 3-14 ms of CPU per
query). Here every container has a small integer id (*gid*) and each of its state, health, image,
image id, label keys and label key=value pairs is a *posting key* with the set of gids that have it
(a host's gids are the values of its container id → gid map). A query is an intersection of such sets (C speed); image references are matched against the
few distinct image names and ids, not the containers; a name is a posting key too (exact names are
one look-up), and a glob is pre-filtered in one string of every distinct name (``re`` in C) on its
longest literal part, whose positions map back to names; the names the glob matches give their sets. Results keep the scan's order, host then
name, through an *order key* per gid (host rank, then position in the host's rows, which are sorted
by name) and the *fleet order* (every gid in that order, rebuilt only when a container or host comes,
goes or moves in its host's rows). The total is the size of the set; a page is either the smallest
order keys of the set, sorted (few matches), or the first ``offset + limit`` gids of the fleet order
found in the set (``filter(set.__contains__, ...)``, in C, stopping once the page is full), whichever
costs less for the set's size.

Upkeep is incremental: ``apply`` takes a write's changes (containers added, changed, removed; hosts
removed), ``sync`` the host's rows after the write (records are rebuilt every poll with a new
``observed_at``; their posting keys only move with an announced change), which also renews the host's
order keys. Nothing else writes a host's rows, so a read never re-checks a host.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Mapping

from fleetd.fleet.changes import Change, ContainerAdded, ContainerChanged, ContainerRemoved, HostRemoved
from fleetd.fleet.index_reads import SEP as _SEP
from fleetd.fleet.index_reads import IndexReads, label_key
from fleetd.fleet.records import ContainerRecord

__all__ = ["ContainerIndex", "label_key"]

_HOST_SPAN = 1 << 24  # order keys: host rank × span + position (a host never holds 16 M containers)
# Relative CPU per match of sorting a set's order keys, against testing one gid of the fleet order.
_COMPACT_EVERY = 8192  # gids handed out between two compactions of the posting sets (at least)
_COMPACT_MIN = 64  # members of a set worth copying to a tighter table
_SPARSE = 4 * 16  # bytes per member above which a set is copied (16-byte slots, under 25 % full)
_sizeof = sys.getsizeof
#: Record fields no posting key is made of (see _keys_of): a change of only these re-posts nothing.
_UNPOSTED: frozenset[str] = frozenset({"command", "status", "created", "ports"})


def _keys_of(host: str, c: ContainerRecord) -> frozenset[str]:
    keys = {
        "s" + _SEP + c.state,
        "h" + _SEP + c.health,
        "i" + _SEP + c.image,
        "d" + _SEP + c.image_id,
    }
    for n in c.names or [c.name]:
        keys.add("n" + _SEP + n)
    for k, v in c.labels.items():  # a bare key's set is the union of its pairs' (no posting of its own)
        keys.add("v" + _SEP + k + _SEP + v)
    return frozenset(keys)


class ContainerIndex(IndexReads):
    __slots__ = (
        "_answers",
        "_by_host",
        "_by_okey",
        "_compact_at",
        "_gids",
        "_image_ids",
        "_images",
        "_label_values",
        "_names_used",
        "_next",
        "_okey",
        "_post",
        "_rank",
        "_ranks_dirty",
        "_rec",
        "_states",
        "walk",
    )

    def __init__(self) -> None:
        self._next = 0
        self._compact_at = _COMPACT_EVERY  # compact the posting sets when _next reaches this
        # (predicates) → their gids, until a posting set changes: never mutated by readers.
        self._answers: dict[tuple[object, ...], set[int] | None] = {}
        # host → container id → gid; its values are the host's gids (no per-host posting set, no
        # (host, id) tuple per container: 4-5 KiB per host of 40 containers)
        self._gids: dict[str, dict[str, int]] = {}
        self._rec: dict[int, ContainerRecord] = {}  # gid → the current record
        self._post: dict[str, set[int]] = {}  # posting key → gids
        self._okey: dict[int, int] = {}  # gid → order key
        self._by_okey: dict[int, int] = {}  # order key → gid
        self._by_host: dict[str, list[int]] = {}  # host → gids in the host's row order
        self._rank: dict[str, int] = {}  # host → its place in name order
        self._ranks_dirty = False
        self._images: Counter[str] = Counter()  # distinct image names, with how many use each
        self._image_ids: Counter[str] = Counter()
        self._label_values: dict[str, Counter[str]] = {}  # label key → its values, with how many have each
        self._names_dirty = True
        self._blob = ""
        self._starts: list[int] = []
        self._start_names: list[str] = []
        self._names_used: Counter[str] = Counter()  # distinct container names
        self._states: Counter[str] = Counter()
        self._order: list[str] = []  # the hosts in name order: the fleet order walks their gids
        self._order_dirty = False
        self.walk: bool | None = None  # how pages are cut: None = by cost, or forced (tests)

    # -- upkeep (the state's writer) ---------------------------------------------------------------

    def apply(self, changes: Iterable[Change]) -> None:
        batch = changes if isinstance(changes, (list, tuple)) else list(changes)
        i, n = 0, len(batch)
        while i < n:
            ch = batch[i]
            if type(ch) is ContainerAdded and ch.host not in self._gids:
                # A host's first rows (its first poll: 40 containers added at once): posted in bulk.
                host, j = ch.host, i + 1
                while j < n and type(nxt := batch[j]) is ContainerAdded and nxt.host == host:
                    j += 1
                self._add_host(host, [a.container for a in batch[i:j]])  # type: ignore[union-attr]
                i = j
                continue
            if type(ch) is ContainerChanged and _UNPOSTED.issuperset(ch.fields):  # e.g. "Up 3 minutes"
                gid = self._gids.get(ch.host, {}).get(ch.container.id)  # no posting key moves
                if gid is not None and gid in self._rec:
                    self._rec[gid] = ch.container
                else:
                    self._put(ch.host, ch.container)
            elif isinstance(ch, (ContainerAdded, ContainerChanged)):
                self._put(ch.host, ch.container)
            elif isinstance(ch, ContainerRemoved):
                self._drop(ch.host, ch.container.id)
            elif isinstance(ch, HostRemoved):
                self.forget(ch.host)
            i += 1

    def _add_host(self, host: str, rows: list[ContainerRecord]) -> None:
        """What :meth:`_put` does for each of the rows of a host the index does not know yet, in one
        pass: each posting key's new gids gathered first and added to its set at once, the counters
        moved once per distinct value, the kept answers dropped once (start-up: ~11 keys × 40
        containers per host, about 40 % less CPU than one container at a time)."""
        if len({c.id for c in rows}) != len(rows):  # an id listed twice: one at a time, as ever
            for c in rows:
                self._put(host, c)
            return
        gids = self._gids[host] = {}
        rec = self._rec
        if host not in self._by_host:
            self._by_host[host] = []
            self._order_dirty = True
        gid = self._next
        sep = _SEP
        by_key: dict[str, list[int]] = {}
        found = by_key.get
        for c in rows:
            gids[c.id] = gid
            rec[gid] = c
            names = c.names or [c.name]
            keys = ["s" + sep + c.state, "h" + sep + c.health, "i" + sep + c.image, "d" + sep + c.image_id]
            keys += ["n" + sep + name for name in (names if len(names) == 1 else dict.fromkeys(names))]
            keys += ["v" + sep + k + sep + v for k, v in c.labels.items()]  # a bare key: its pairs' union
            for key in keys:
                ids = found(key)
                if ids is None:
                    by_key[key] = [gid]
                else:
                    ids.append(gid)
            gid += 1
        self._next = gid
        post = self._post
        counters = {"i": self._images, "d": self._image_ids, "n": self._names_used, "s": self._states}
        label_values = self._label_values
        for key, ids in by_key.items():
            posted = post.get(key)
            if posted is None:
                post[key] = set(ids)
            else:
                posted.update(ids)
            kind = key[0]
            if kind == "v":  # each label key's distinct values, with how many containers have each
                _, label, value = key.split(sep, 2)
                values = label_values.get(label)
                if values is None:
                    values = label_values[label] = Counter()
                values[value] += len(ids)
                continue
            counter = counters.get(kind)
            if counter is not None:
                value = key[2:]
                had = counter[value]
                counter[value] = had + len(ids)
                if not had and kind == "n":
                    self._names_dirty = True
        self._answers.clear()
        if gid > self._compact_at:
            self.compact()

    def sync(self, host: str, rows: tuple[ContainerRecord, ...]) -> None:
        """The host's rows after a write whose changes were applied: new objects, same posting keys."""
        gids = self._gids.get(host, {})
        order: list[int] = []
        for c in rows:
            gid = gids.get(c.id)
            if gid is None:  # a row no change announced: index the host afresh
                self.reindex(host, rows)
                return
            order.append(gid)
        if len(order) != len(gids):  # a removal no change announced
            self.reindex(host, rows)
            return
        rec = self._rec
        for gid, c in zip(order, rows, strict=True):
            rec[gid] = c
        self._place(host, order)

    def replace(self, host: str, rows: Iterable[ContainerRecord]) -> bool:
        """Rows that took the places of rows with the same ids and names (a refresh of a few rows:
        the host's order holds, their changes were applied): only the records move. False when an
        id is unknown (then :meth:`sync` the host)."""
        gids, rec = self._gids.get(host), self._rec
        for c in rows:
            gid = gids.get(c.id) if gids is not None else None
            if gid is None:
                return False
            rec[gid] = c
        return True

    def reindex(self, host: str, rows: tuple[ContainerRecord, ...]) -> None:
        rank, dirty = self._rank.get(host), self._ranks_dirty
        self.forget(host)
        if rank is not None:  # the host keeps its place: no new order keys for the whole fleet
            self._rank[host], self._ranks_dirty = rank, dirty
        for c in rows:
            self._put(host, c)
        gids = self._gids.get(host, {})
        self._place(host, [gids[c.id] for c in rows])

    def compact(self) -> int:
        """Copy the posting sets whose tables are mostly empty; how many were copied.

        A set grown by ``add`` quadruples its table whenever it is 60 % full, so the large posting
        sets of a fleet that has just come up are 15-60 % full (≈ 95 bytes per member); a copy is
        sized for its members (25-50 % full, ≈ 45 bytes). Called as gids are handed out (after
        every ``_COMPACT_EVERY``, and as many as there are containers) and once the first round
        of polls has ended."""
        self._compact_at = self._next + max(_COMPACT_EVERY, len(self._rec))
        post = self._post
        sparse = [k for k, ids in post.items() if len(ids) >= _COMPACT_MIN and _sizeof(ids) > _SPARSE * len(ids)]
        for key in sparse:
            post[key] = set(post[key])
        if sparse:
            self._answers.clear()  # they may hold the old sets
        return len(sparse)

    def forget(self, host: str) -> None:
        for cid in list(self._gids.get(host, ())):
            self._drop(host, cid)
        self._gids.pop(host, None)
        if self._by_host.pop(host, None) is not None:
            self._order_dirty = True
        if self._rank.pop(host, None) is not None:
            self._ranks_dirty = True

    def _place(self, host: str, order: list[int]) -> None:
        """The host's gids in row order (rows are sorted by name) → their order keys."""
        by_host = self._by_host
        same = by_host.get(host) == order
        if host not in by_host:
            self._order_dirty = True
        by_host[host] = order
        rank = self._rank.get(host)
        if rank is None:
            self._rank[host] = -1
            self._ranks_dirty = True
        elif not same and rank >= 0:  # the same rows in the same places keep their keys (most polls);
            self._order_keys(order, rank)  # rank -1: the next read renews every key (_refresh_ranks)

    def _order_keys(self, order: list[int], rank: int) -> None:
        base = rank * _HOST_SPAN
        okey, by_okey = self._okey, self._by_okey
        for i, gid in enumerate(order):
            old = okey.get(gid)
            if old is not None and by_okey.get(old) == gid:
                del by_okey[old]
            okey[gid] = base + i
            by_okey[base + i] = gid

    def _put(self, host: str, c: ContainerRecord) -> None:
        gids = self._gids.get(host)
        if gids is None:
            gids = self._gids[host] = {}
        gid = gids.get(c.id)
        if gid is None:
            gid = self._next
            self._next += 1
            if gid >= self._compact_at:
                self.compact()
            gids[c.id] = gid
            if host not in self._by_host:
                self._by_host[host] = []
                self._order_dirty = True
        old = self._rec.get(gid)
        self._rec[gid] = c
        if old is c:  # the poll reused the record: nothing of it changed
            return
        # A record's posting keys are computed again from the old record rather than kept per
        # container (a frozenset of ~11 fresh strings per container was ~60 KiB per host).
        keys = _keys_of(host, c)
        before = _keys_of(host, old) if old is not None else None
        if before == keys:
            return
        gone = before - keys if before is not None else frozenset()
        new = keys - before if before is not None else keys
        for key in gone:
            self._unpost(key, gid)
        for key in new:
            self._post.setdefault(key, set()).add(gid)
        if gone or new:
            self._answers.clear()
        self._count(gone, -1)
        self._count(new, +1)
        if old is None or old.labels != c.labels:
            if old is not None:
                self._count_labels(old.labels, -1)
            self._count_labels(c.labels, +1)

    def _drop(self, host: str, cid: str) -> None:
        gids = self._gids.get(host)
        gid = gids.pop(cid, None) if gids is not None else None
        if gid is None:
            return
        record = self._rec.pop(gid, None)
        old = self._okey.pop(gid, None)
        if old is not None and self._by_okey.get(old) == gid:
            del self._by_okey[old]
        keys = _keys_of(host, record) if record is not None else frozenset()
        for key in keys:
            self._unpost(key, gid)
        self._count(keys, -1)
        if record is not None:
            self._count_labels(record.labels, -1)

    def _unpost(self, key: str, gid: int) -> None:
        ids = self._post.get(key)
        self._answers.clear()
        if ids is not None:
            ids.discard(gid)
            if not ids:
                del self._post[key]

    def _count(self, keys: Iterable[str], delta: int) -> None:
        """Distinct image names, image ids, container names and states, with how many containers have each."""
        counters = {"i": self._images, "d": self._image_ids, "n": self._names_used, "s": self._states}
        for key in keys:
            kind = key[0]
            counter = counters.get(kind)
            if counter is not None:
                value = key[2:]
                counter[value] += delta
                if counter[value] <= 0:
                    del counter[value]
                    self._names_dirty |= kind == "n"
                elif delta > 0 and counter[value] == delta:
                    self._names_dirty |= kind == "n"

    def _count_labels(self, labels: Mapping[str, str], delta: int) -> None:
        """Each label key's distinct values, with how many containers have each (a bare key's set)."""
        every = self._label_values
        for label, value in labels.items():
            values = every.get(label)
            if values is None:
                values = every[label] = Counter()
            values[value] += delta
            if values[value] <= 0:
                del values[value]
                if not values:
                    del every[label]

    # -- for the queries (fleet/index_reads.py) --------------------------------------------------

    def _refresh_ranks(self) -> None:
        if not self._ranks_dirty:
            return
        self._ranks_dirty = False
        self._rank = {h: i for i, h in enumerate(sorted(self._by_host))}
        self._okey.clear()
        self._by_okey.clear()
        for host, order in self._by_host.items():
            self._order_keys(order, self._rank[host])
