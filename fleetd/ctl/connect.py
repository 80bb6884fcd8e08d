"""Where the command line finds fleetd and who it says it is: URL, token and TLS options.

The URL comes from ``--url``, else ``FLEETD_URL``, else the ``listen`` address of the local config
(``--config``, ``FLEETD_CONFIG``, /etc/fleetd/fleetd.yaml or ./config/fleetd.yaml, the first that
exists), else ``http://127.0.0.1:8080``. The token comes from ``--token-file``, else ``FLEETD_TOKEN``
(the token itself), else ``FLEETD_TOKEN_FILE``. Only ``listen`` and ``listen_tls`` are read from the
config, so a client that may not read the daemons' TLS keys still finds fleetd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from fleetd.config.urls import parse_listen
from fleetd.ctl.errors import CtlError

__all__ = ["CONFIG_CANDIDATES", "DEFAULT_URL", "Endpoint", "resolve_endpoint"]

DEFAULT_URL: Final = "http://127.0.0.1:8080"
CONFIG_CANDIDATES: Final = (Path("/etc/fleetd/fleetd.yaml"), Path("config/fleetd.yaml"))
_ANY_ADDRESS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One fleetd to talk to, and how."""

    url: str  # scheme://host:port, no trailing slash
    source: str  # where the URL came from, for messages ("--url", "FLEETD_URL", "config F", "default")
    token: str | None = None
    token_source: str | None = None
    cacert: Path | None = None
    insecure: bool = False


def _url_from_config(path: Path) -> str | None:
    """The URL of the fleetd configured in ``path``; None when the file says nothing usable."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    listen = doc.get("listen", "127.0.0.1:8080")
    if not isinstance(listen, str):
        return None
    try:
        host, port = parse_listen(listen)
    except ValueError:
        return None
    host = _ANY_ADDRESS.get(host, host)
    scheme = "https" if doc.get("listen_tls") else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _discover_url(url: str | None, config: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    if url:
        return url, "--url"
    if env.get("FLEETD_URL"):
        return env["FLEETD_URL"], "FLEETD_URL"
    named = config or env.get("FLEETD_CONFIG")
    candidates = [Path(named)] if named else [p for p in CONFIG_CANDIDATES if p.is_file()]
    for path in candidates:
        if (found := _url_from_config(path)) is not None:
            return found, f"the listen address in {path}"
        if named:
            raise CtlError(f"{path}: cannot read fleetd's listen address from it; give --url or FLEETD_URL")
    return DEFAULT_URL, "the default address"


def _normalise(url: str, source: str) -> str:
    text = url.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    scheme = text.partition("://")[0].lower()
    if scheme not in ("http", "https"):
        raise CtlError(f"{source}: {url!r} is not an http:// or https:// URL")
    return text


def _read_token(path: str, what: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CtlError(f"{what} {path}: cannot read the token: {exc.strerror or exc}") from None
    except UnicodeError:
        raise CtlError(f"{what} {path}: not a text file") from None
    if not token or any(ch.isspace() for ch in token):
        raise CtlError(f"{what} {path}: expected one token on one line")
    return token


def resolve_endpoint(
    *,
    url: str | None = None,
    config: str | None = None,
    token_file: str | None = None,
    cacert: str | None = None,
    insecure: bool = False,
    env: Mapping[str, str] | None = None,
) -> Endpoint:
    """The endpoint the options and the environment name; CtlError on an unreadable token file."""
    env = os.environ if env is None else env
    raw, source = _discover_url(url, config, env)
    token: str | None = None
    token_source: str | None = None
    if token_file:
        token, token_source = _read_token(token_file, "--token-file"), f"--token-file {token_file}"
    elif env.get("FLEETD_TOKEN", "").strip():
        token, token_source = env["FLEETD_TOKEN"].strip(), "FLEETD_TOKEN"
    elif env.get("FLEETD_TOKEN_FILE"):
        path = env["FLEETD_TOKEN_FILE"]
        token, token_source = _read_token(path, "FLEETD_TOKEN_FILE"), f"FLEETD_TOKEN_FILE {path}"
    ca = cacert or env.get("FLEETD_CACERT") or None
    if ca is not None and not Path(ca).is_file():
        raise CtlError(f"--cacert {ca}: no such file")
    return Endpoint(
        url=_normalise(raw, source),
        source=source,
        token=token,
        token_source=token_source,
        cacert=Path(ca) if ca else None,
        insecure=insecure,
    )
