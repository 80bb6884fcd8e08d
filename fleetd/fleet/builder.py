"""One host's container records, poll after poll, from the daemon's ``/containers/json`` answer.

Most polls find nothing changed, so most of the work is not done:

- an answer byte for byte the same as the previous one (the usual case: dockerd writes the same JSON
  for the same containers) is **not decoded at all**; the previous records come back with the new
  ``observed_at``, and the diff is empty;
- otherwise the answer is split into its elements (``list[msgspec.Raw]``, no values decoded) and only
  the elements whose JSON changed are decoded and rebuilt; the others reuse their record.

Nothing of the answer is kept but hashes (64-bit, keyed per process, compared together with the
length), so a host costs no copy of its last answer; a changed answer could only be taken for the
previous one by a 2⁻⁶⁴ collision. The records are the only long-lived objects a poll creates, and only
for what changed (records are ``gc=False``: the cyclic collector never walks them).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import msgspec

from fleetd.dockerapi.models import ContainerSummary
from fleetd.fleet.records import ContainerDiff, ContainerRecord, changed_fields, container_record, places_of

__all__ = ["ContainerRecords", "Decode", "split_answer"]

T = TypeVar("T")
#: Decodes JSON into a type, raising the Engine client's protocol error (``DockerClient.decode``).
Decode = Callable[[bytes, type[Any]], Any]

_RAW_LIST = list[msgspec.Raw]
_SUMMARIES = list[ContainerSummary]
_replace = msgspec.structs.replace


def _plain_decode(body: bytes, type_: type[T]) -> T:
    return msgspec.json.decode(body, type=type_)


def split_answer(body: bytes, decode: Decode = _plain_decode) -> tuple[list[bytes], list[int]]:
    """A ``/containers/json`` answer's elements, undecoded, and the keys the builder knows each by
    (an event refresh's answer is split the same way, so that the builder can learn its rows)."""
    elements = [bytes(raw) for raw in decode(body, _RAW_LIST)]
    return elements, [hash(e) for e in elements]


class ContainerRecords:
    """Builds one host's records, reusing the record of every container whose JSON has not changed."""

    __slots__ = ("_body", "_keys", "_records")
    _keys: array[int]

    def __init__(self) -> None:
        self._body: tuple[int, int] | None = None  # (length, hash) of the last answer built from
        self._records: tuple[ContainerRecord, ...] = ()  # the last build, ordered by name
        # The hash of each of those records' JSON element, same order; 8 bytes each in an array
        # (a tuple of int objects was 44 bytes per container).
        self._keys = array("q")

    def same_answer(self, body: bytes) -> bool:
        """True when ``body`` is the answer the last build was made from."""
        return self._body == (len(body), hash(body))

    def build_body(
        self, host: str, body: bytes, observed_at: str | None, decode: Decode = _plain_decode
    ) -> tuple[tuple[ContainerRecord, ...], ContainerDiff]:
        """The records of a ``/containers/json`` answer, ordered by name, and how they differ from
        the previous build's. ``decode`` raises on JSON that is invalid or of the wrong shape; the
        builder is unchanged then."""
        key = (len(body), hash(body))
        if key == self._body:
            return self._seen_again(observed_at), ContainerDiff()
        elements, hashes = split_answer(body, decode)
        if not self._keys:
            # Nothing to reuse (a host's first answer): every element is decoded, so the whole
            # answer is, as one typed list in one call; the elements are only hashed.
            summaries: list[ContainerSummary] = decode(body, _SUMMARIES)
            out = self._build(host, list(zip(hashes, summaries, strict=True)), observed_at, None)
            self._body = key
            return out
        if len(hashes) == len(self._keys) and set(hashes) == set(self._keys):
            # Every element is one the last build (or a refresh the builder learnt) knows, in
            # another order perhaps: the same records, and names decide their order.
            self._body = key
            return self._seen_again(observed_at), ContainerDiff()

        def one(element: bytes) -> ContainerSummary:
            try:
                summary: ContainerSummary = decode(element, ContainerSummary)
            except Exception:
                decode(body, _SUMMARIES)  # the error as the whole answer reports it (with its path)
                raise
            return summary

        out = self._build(host, list(zip(hashes, elements, strict=True)), observed_at, one)
        self._body = key
        return out

    def _seen_again(self, observed_at: str | None) -> tuple[ContainerRecord, ...]:
        """The last build's records, observed again at ``observed_at``."""
        self._records = tuple([_replace(r, observed_at=observed_at) for r in self._records])
        return self._records

    def learn(self, rows: Mapping[str, tuple[int, ContainerRecord] | None]) -> tuple[ContainerRecord, ...]:
        """Rows another observation wrote (an event refresh): by container id, the hash of the
        element it was built from and the record the state keeps, or None for a container that is
        gone. The next poll then finds them as they are (no decode, no change announced again)."""
        self._body = None  # the whole answer's hash no longer describes these records
        if self._learn_in_place(rows):
            return self._records
        by_id = {r.id: (k, r) for k, r in zip(self._keys, self._records, strict=True)}
        for cid, row in rows.items():
            if row is None:
                by_id.pop(cid, None)
            else:
                by_id[cid] = row
        built = sorted(by_id.values(), key=lambda kr: kr[1].name)
        self._keys = array("q", [k for k, _ in built])
        self._records = tuple([r for _, r in built])
        return self._records

    def _learn_in_place(self, rows: Mapping[str, tuple[int, ContainerRecord] | None]) -> bool:
        """The usual refresh: rows of containers the builder knows, under the same names, so the
        order by name holds and each takes its old place (no rebuild, no sort). False, with
        nothing changed, for anything else (a row gone or new, a rename, an id held twice)."""
        records = self._records
        at = places_of(records, [(cid, None if row is None else row[1]) for cid, row in rows.items()])
        if at is None:
            return False
        places = [(i, *row) for i, row in zip(at, rows.values(), strict=True) if row is not None]
        updated = list(records)
        for i, key, record in places:
            updated[i] = record
            self._keys[i] = key
        self._records = tuple(updated)
        return True

    def build(
        self, host: str, containers: Iterable[ContainerSummary], observed_at: str | None
    ) -> tuple[ContainerRecord, ...]:
        """The records of already decoded summaries, ordered by name."""
        return self.build_diff(host, containers, observed_at)[0]

    def build_diff(
        self, host: str, containers: Iterable[ContainerSummary], observed_at: str | None
    ) -> tuple[tuple[ContainerRecord, ...], ContainerDiff]:
        """As :meth:`build_body`, from decoded summaries (keyed by their JSON encoding)."""
        items = [(hash(msgspec.json.encode(c)), c) for c in containers]
        self._body = None
        return self._build(host, items, observed_at, None)

    def _build(
        self,
        host: str,
        items: list[tuple[int, Any]],
        observed_at: str | None,
        decode_one: Callable[[Any], ContainerSummary] | None,
    ) -> tuple[tuple[ContainerRecord, ...], ContainerDiff]:
        previous = dict(zip(self._keys, self._records, strict=True))
        built: list[tuple[int, ContainerRecord]] = []
        fresh: list[ContainerRecord] = []
        for k, item in items:
            old = previous.pop(k, None)
            if old is not None:  # the same JSON: the same record, seen again
                built.append((k, _replace(old, observed_at=observed_at)))
                continue
            summary = decode_one(item) if decode_one is not None else item
            record = container_record(host, summary, observed_at)
            built.append((k, record))
            fresh.append(record)
        diff = ContainerDiff()
        if fresh or previous:
            before = {r.id: r for r in previous.values()}  # records whose JSON is not in this answer
            for record in fresh:
                prev = before.pop(record.id, None)
                if prev is None:
                    diff.added.append(record)
                elif fields := changed_fields(prev, record):
                    diff.changed.append((record, fields))
            diff.removed.extend(before.values())
        built.sort(key=lambda kr: kr[1].name)
        self._keys = array("q", [k for k, _ in built])
        self._records = tuple([r for _, r in built])
        return self._records, diff

