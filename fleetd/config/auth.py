"""``auth:``: API tokens and their roles. Tokens are kept only as SHA-256 and never appear in messages."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from fleetd.config.fields import Section
from fleetd.config.hosts import NAME_RE, NAME_RULE
from fleetd.config.model import AuthSettings, Role, TokenSettings

__all__ = ["match_digest", "read_auth", "token_digest"]

T = TypeVar("T")


def token_digest(token: str) -> bytes:
    """The SHA-256 of a presented token: what the config holds (never the token itself)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def match_digest(known: Iterable[tuple[bytes, T]], presented: bytes) -> T | None:
    """The value whose digest matches; every digest is compared in constant time, whichever matched
    first, so the time taken says nothing about which token (or whether one) was close."""
    found: T | None = None
    for digest, value in known:
        if hmac.compare_digest(presented, digest) and found is None:
            found = value
    return found

AUTH_KEYS = ("anonymous_read", "protect_health", "tokens")
TOKEN_KEYS = ("name", "role", "token_sha256", "token_file")
ROLES: dict[str, Role] = {"viewer": "viewer", "operator": "operator", "admin": "admin"}
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def read_auth(top: Section, *, config_dir: Path) -> AuthSettings:
    sec = top.section("auth", AUTH_KEYS)
    if sec is None:
        return AuthSettings()
    tokens: list[TokenSettings] = []
    names: dict[str, int] = {}
    digests: dict[str, str] = {}
    for index, node in enumerate(sec.sequence("tokens")):
        entry = Section.of(
            node,
            file=sec.file,
            field=f"{sec.sub('tokens')}[{index}]",
            allowed=TOKEN_KEYS,
            problems=sec.problems,
            secret=True,
        )
        if entry is None:
            continue
        name = entry.text("name", required=True, coerce=True)
        if name is not None:
            if not NAME_RE.fullmatch(name):
                entry.problem("name", f"invalid token name '{name}'; {NAME_RULE}")
                name = None
            elif name in names:
                entry.problem("name", f"duplicate token name '{name}' (first at line {names[name]})")
                name = None
            else:
                names[name] = entry.line
        role = entry.choice("role", ROLES, required=True)
        digest = _digest(entry, config_dir)
        if digest is not None and digest in digests:
            which = "token_sha256" if entry.has("token_sha256") else "token_file"
            entry.problem(which, f"same token as '{digests[digest]}'; every token must be different")
            digest = None
        if name is not None and digest is not None:
            digests[digest] = name
            if role is not None:
                tokens.append(TokenSettings(name=name, token_sha256=digest, role=role))
    return AuthSettings(
        tokens=tuple(tokens),
        anonymous_read=bool(sec.boolean("anonymous_read")),
        protect_health=bool(sec.boolean("protect_health")),
    )


def _digest(entry: Section, config_dir: Path) -> str | None:
    """The token's SHA-256 (lowercase hex), from token_sha256 or from hashing token_file's contents."""
    given = [key for key in ("token_sha256", "token_file") if entry.has(key)]
    if len(given) != 1:
        if given:
            entry.problem("token_file", "give either token_sha256 or token_file, not both")
        else:
            entry.problems.add(
                entry.file,
                entry.line,
                entry.sub("token_sha256"),
                "missing token: give token_sha256 (64 hex digits) or token_file",
            )
        return None
    if given[0] == "token_sha256":
        text = entry.text("token_sha256")
        if text is None:
            return None
        if not _SHA256_HEX.fullmatch(text.strip()):
            entry.problem("token_sha256", "must be 64 hexadecimal digits: the SHA-256 of the token")
            return None
        return text.strip().lower()
    path = entry.readable_file("token_file", config_dir)
    if path is None:
        return None
    try:
        token = path.read_bytes().decode("utf-8").strip()
    except OSError as exc:
        entry.problem("token_file", f"cannot read {path}: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError:
        entry.problem("token_file", f"{path} is not valid UTF-8 text")
        return None
    if not token:
        entry.problem("token_file", f"{path} is empty")
        return None
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
