"""The read side of :class:`~fleetd.fleet.index.ContainerIndex`: selections, name globs, counts and pages.

How the indexes are laid out and kept is in fleetd/fleet/index.py; this mixin only reads them (the
selections it keeps between writes are dropped by the writer when a posting set changes).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice

from fleetd.fleet.match import image_id_matches, image_name_matches, name_literal, name_pattern_matches
from fleetd.fleet.records import ContainerRecord

__all__ = ["SEP", "IndexReads", "label_key"]

SEP = "\x00"  # between a posting key's parts: no name, label or image holds it
_SEP = SEP
_SORT_COST = 6
_ANSWERS_KEPT = 256  # selections kept between writes that change a posting set


def label_key(selector: str) -> tuple[str, bool]:
    """``k=v`` → the pair's posting key (split at the first ``=``, as label_matches), True;
    ``k`` → the key itself, False (its gids are those of every ``k=...`` pair)."""
    key, eq, value = selector.partition("=")
    return ("v" + _SEP + key + _SEP + value, True) if eq else (key, False)


class IndexReads:
    """Mixed into ContainerIndex, which holds (in its slots) every attribute declared here."""

    # The read side's own caches (set up by ContainerIndex.__init__, marked dirty by its writer).
    __slots__ = ("_blob", "_names_dirty", "_order", "_order_dirty", "_start_names", "_starts")

    _answers: dict[tuple[object, ...], set[int] | None]
    _gids: dict[str, dict[str, int]]
    _rec: dict[int, ContainerRecord]
    _post: dict[str, set[int]]
    _okey: dict[int, int]
    _by_okey: dict[int, int]
    _by_host: dict[str, list[int]]
    _images: Counter[str]
    _image_ids: Counter[str]
    _label_values: dict[str, Counter[str]]
    _names_dirty: bool
    _blob: str
    _starts: list[int]
    _start_names: list[str]
    _names_used: Counter[str]
    _states: Counter[str]
    _order: list[str]
    _order_dirty: bool
    walk: bool | None

    def _refresh_ranks(self) -> None:
        raise NotImplementedError  # ContainerIndex._refresh_ranks: the order keys are the writer's

    def _names(self) -> tuple[str, list[int], list[str]]:
        """One string of every distinct container name, where each starts, and the names."""
        if self._names_dirty:
            names = list(self._names_used)
            starts: list[int] = []
            at = 0
            for n in names:
                starts.append(at)
                at += len(n) + 1
            self._blob, self._starts, self._start_names = _SEP.join(names), starts, names
            self._names_dirty = False
        return self._blob, self._starts, self._start_names

    def _with_name(self, pattern: str) -> set[int]:
        """Containers one of whose names matches ``pattern``, exactly or as a glob (as
        :func:`~fleetd.fleet.match.container_name_matches`): among the distinct names, those holding the
        glob's longest literal part (found in C) are tested with the same predicate."""
        post = self._post
        literal = name_literal(pattern)
        if literal == pattern:  # no glob: one name's own set (callers only read it)
            return post.get("n" + _SEP + pattern, set())
        if _SEP in literal:
            return set()
        candidates: Iterable[str]
        if literal:
            blob, starts, names = self._names()
            found = re.finditer(re.escape(literal), blob)
            candidates = {names[bisect.bisect_right(starts, m.start()) - 1] for m in found}
        else:
            candidates = self._names_used
        return set().union(*(post["n" + _SEP + n] for n in candidates if name_pattern_matches(n, pattern)))

    def select(
        self,
        *,
        hosts: Sequence[str] | None,
        state: str | None,
        health: str | None,
        labels: Sequence[str],
        image: str | None,
        name: str | None,
    ) -> set[int] | None:
        """The gids satisfying every predicate given; None when no container predicate was given.
        Answers are kept until a posting set changes (dashboards and scripts repeat their queries)."""
        key = (None if hosts is None else tuple(hosts), state, health, tuple(labels), image, name)
        answers = self._answers
        if key in answers:
            return answers[key]
        if len(answers) >= _ANSWERS_KEPT:
            answers.clear()
        found = answers[key] = self._select(hosts, state, health, labels, image, name)
        return found

    def _select(
        self,
        hosts: Sequence[str] | None,
        state: str | None,
        health: str | None,
        labels: Sequence[str],
        image: str | None,
        name: str | None,
    ) -> set[int] | None:
        sets: list[set[int]] = []
        for key, pair in [label_key(sel) for sel in labels]:
            if pair:
                sets.append(self._post.get(key, set()))
            else:
                post, prefix = self._post, "v" + _SEP + key + _SEP
                sets.append(set().union(*(post[prefix + v] for v in self._label_values.get(key, ()))))
        if state is not None:
            sets.append(self._post.get("s" + _SEP + state, set()))
        if health is not None:
            sets.append(self._post.get("h" + _SEP + health, set()))
        if image is not None:
            union: set[int] = set()
            for value in self._images:
                if image_name_matches(value, image):
                    union |= self._post.get("i" + _SEP + value, set())
            for value in self._image_ids:
                if image_id_matches(value, image):
                    union |= self._post.get("d" + _SEP + value, set())
            sets.append(union)
        if hosts is not None:
            in_hosts: set[int] = set()
            for h in hosts:
                in_hosts.update(self._gids.get(h, {}).values())
            sets.append(in_hosts)
        if name is not None:
            sets.append(self._with_name(name))
        if not sets:
            return None
        if len(sets) == 1:
            return sets[0]  # the index's own set: callers only read it
        sets.sort(key=len)
        return sets[0].intersection(*sets[1:]) if sets[0] else set()

    def counts(self) -> tuple[int, dict[str, int], dict[str, int]]:
        """How many containers there are, by state (sorted) and by image (most used first)."""
        by_state = dict(sorted(self._states.items()))
        by_image = dict(sorted(self._images.items(), key=lambda kv: (-kv[1], kv[0])))
        return len(self._rec), by_state, by_image

    def _fleet_order(self) -> Iterator[int]:
        """Every gid in fleet order, lazily: the hosts in name order (sorted again only when a host
        comes or goes), each one's gids as its rows are now. A page stops the walk once it is full;
        no list of every gid is built again whenever a container comes, goes or moves (a 400,000-entry
        list at 10,000 hosts, a few ms for the first read after each such change)."""
        if self._order_dirty:
            self._order = sorted(self._by_host)
            self._order_dirty = False
        return chain.from_iterable(map(self._by_host.__getitem__, self._order))

    def page_all(self, offset: int, limit: int | None) -> tuple[list[ContainerRecord], int]:
        """Every container in fleet order, ``offset`` and ``limit`` applied, and how many there are."""
        chosen = islice(self._fleet_order(), offset, None if limit is None else offset + limit)
        return list(map(self._rec.__getitem__, chosen)), len(self._rec)

    def ordered(self, gids: set[int], offset: int, limit: int | None) -> list[ContainerRecord]:
        """The records of ``gids`` in fleet order (host, then name), ``offset`` and ``limit`` applied.
        Few matches: their order keys sorted (in C; a key function or heapq would loop in Python).
        Many: the fleet order walked until the page is full, each gid tested against the set in C."""
        self._refresh_ranks()
        n = len(gids)
        end = n if limit is None else min(n, offset + limit)
        if end <= offset:
            return []
        walk = self.walk
        if walk is None:  # walking tests about end * fleet / n gids; sorting costs about n of them each
            walk = end * len(self._rec) < _SORT_COST * n * n
        rec = self._rec
        if walk:
            found = islice(filter(gids.__contains__, self._fleet_order()), offset, end)
            return list(map(rec.__getitem__, found))
        keys = sorted(map(self._okey.__getitem__, gids))
        by_okey = self._by_okey
        return [rec[by_okey[k]] for k in keys[offset:end]]
