"""``--format`` as the docker CLI takes it: Go-template fields, a ``table`` prefix, or ``json``.

    fleetd ps --format '{{.Host}}/{{.Names}} {{.Status}}'
    fleetd ps --format 'table {{.Host}}\t{{.ID}}\t{{.Label "app"}}'
    fleetd ps --format json                     # one JSON object per line, like docker's
    fleetd ps --format '{{json .Labels}}'

The part of Go's template language people put on a command line: ``{{.Field}}``, ``{{.Label "k"}}``,
``{{json .}}`` / ``{{json .Field}}``, ``{{upper .F}}``, ``{{lower .F}}``, ``{{truncate .F N}}``, and
``\\t`` / ``\\n`` escapes. Anything else is refused with the list of fields, never printed half-done.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fleetd.ctl.errors import CtlError

__all__ = ["Template", "parse_template"]

_ACTION: Final = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
Fields = Mapping[str, Callable[[Any], Any]]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


@dataclass(frozen=True, slots=True)
class _Piece:
    literal: str | None = None
    func: str | None = None  # None, "json", "upper", "lower", "truncate", "label"
    field: str | None = None  # None: the whole object (".")
    arg: str | None = None


def _header(field: str | None, headers: Mapping[str, str]) -> str:
    return headers.get(field or "", (field or "").upper())


@dataclass(frozen=True, slots=True)
class Template:
    pieces: tuple[tuple[_Piece, ...], ...]  # one tuple per cell (one cell unless a table)
    table: bool
    fields: Fields
    raw_json: bool = False  # --format json

    def render_row(self, item: Any, whole: Any) -> list[str]:
        return ["".join(self._piece(p, item, whole) for p in cell) for cell in self.pieces]

    def render(self, item: Any, whole: Any) -> str:
        if self.raw_json:
            return json.dumps(whole, sort_keys=True, ensure_ascii=False)
        return "\t".join(self.render_row(item, whole))

    def headers(self, headers: Mapping[str, str]) -> list[str]:
        out = []
        for cell in self.pieces:
            out.append(
                "".join(
                    p.literal
                    if p.literal is not None
                    else _header(p.field if p.func != "label" else p.arg, headers)
                    for p in cell
                ).strip()
            )
        return out

    def _piece(self, p: _Piece, item: Any, whole: Any) -> str:
        if p.literal is not None:
            return p.literal
        if p.func == "label":
            labels = self.fields["Labels"](item) or {}
            return str(labels.get(p.arg or "", ""))
        value = whole if p.field is None else self.fields[p.field](item)
        if p.func == "json":
            return json.dumps(value, sort_keys=True, ensure_ascii=False)
        text = _text(value)
        if p.func == "upper":
            return text.upper()
        if p.func == "lower":
            return text.lower()
        if p.func == "truncate":
            return text[: int(p.arg or "0")]
        return text


def _parse_action(action: str, fields: Fields) -> _Piece:
    try:
        words = shlex.split(action)
    except ValueError as exc:
        raise CtlError(f"--format: {{{{{action}}}}}: {exc}") from None

    def field_of(word: str) -> str | None:
        if word == ".":
            return None
        name = word[1:] if word.startswith(".") else ""
        if name not in fields:
            raise CtlError(
                f"--format: unknown field {word!r}; the fields are " + ", ".join(f".{f}" for f in fields)
            )
        return name

    if len(words) == 1:
        if not words[0].startswith("."):
            raise CtlError(f"--format: {{{{{action}}}}}: expected a field such as .ID")
        return _Piece(field=field_of(words[0]))
    head = words[0]
    if head in ("json", "upper", "lower") and len(words) == 2:
        return _Piece(func=head, field=field_of(words[1]))
    if head == "truncate" and len(words) == 3 and words[2].isdigit():
        return _Piece(func="truncate", field=field_of(words[1]), arg=words[2])
    if head == ".Label" and len(words) == 2 and "Labels" in fields:
        return _Piece(func="label", arg=words[1])
    raise CtlError(
        f'--format: {{{{{action}}}}} is not supported; use {{{{.Field}}}}, {{{{.Label "key"}}}}, '
        "{{json .}}, {{upper .F}}, {{lower .F}} or {{truncate .F N}}"
    )


def _pieces(text: str, fields: Fields) -> tuple[_Piece, ...]:
    out: list[_Piece] = []
    pos = 0
    for m in _ACTION.finditer(text):
        if m.start() > pos:
            out.append(_Piece(literal=text[pos : m.start()]))
        out.append(_parse_action(m.group(1), fields))
        pos = m.end()
    if pos < len(text):
        out.append(_Piece(literal=text[pos:]))
    if "{{" in "".join(p.literal or "" for p in out):
        raise CtlError(f"--format: unclosed '{{{{' in {text!r}")
    return tuple(out)


def parse_template(text: str, fields: Fields) -> Template:
    """A template for objects whose fields ``fields`` reads; CtlError naming the problem if bad."""
    if text.strip() == "json":
        return Template((), table=False, fields=fields, raw_json=True)
    body = text.replace("\\t", "\t").replace("\\n", "\n")
    table = body.startswith("table")
    if table:
        body = body[len("table") :].lstrip(" ")
        if not body.strip():
            raise CtlError("--format: 'table' needs fields, e.g. 'table {{.ID}}\\t{{.Names}}'")
        cells: Sequence[str] = body.split("\t")
    else:
        cells = [body]
    return Template(tuple(_pieces(c, fields) for c in cells), table=table, fields=fields)
