"""Addresses in the config: Docker Engine URLs of the hosts, and fleetd's own ``listen`` address."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["SCHEMES", "normalise_engine_url", "parse_listen"]

SCHEMES = ("tcp", "http", "https", "unix", "ssh")
_SCHEME_HINT = "use tcp://, http://, https://, unix:// or ssh://"
_SSH_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}")
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?")


def normalise_engine_url(raw: str, *, tls: bool) -> tuple[str, str]:
    """Return ``(url, scheme)`` with the url normalised (``tcp://h:2375``, ``unix:///p``, ``ssh://u@h:22``).

    Without a port, tcp:// and http:// get 2375; https:// and tcp:// with *tls* get 2376; ssh:// 22.
    Raise :class:`ValueError` with a message fit for the user.
    """
    text = raw.strip()
    if "://" not in text:
        if text.startswith("/"):
            raise ValueError(f"not a URL; for a socket path write unix://{text}")
        raise ValueError(
            f"not a URL: '{raw}'; use e.g. tcp://host:2375, https://host:2376 or unix:///var/run/docker.sock"
        )
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported scheme '{scheme}'; {_SCHEME_HINT}")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"invalid URL '{raw}': {exc}") from None
    if parts.query or "?" in text:
        raise ValueError("a Docker URL takes no query string ('?...')")
    if parts.fragment or "#" in text:
        raise ValueError("a Docker URL takes no fragment ('#...')")
    if scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError("unix:// needs an absolute socket path, e.g. unix:///var/run/docker.sock")
        return f"unix://{parts.path}", scheme
    user = ""
    if scheme == "ssh" and "@" in parts.netloc:
        user = _ssh_user(parts.netloc.rpartition("@")[0])
    elif "@" in parts.netloc:
        raise ValueError("user names and passwords ('user@') are not supported in the URL")
    if parts.path not in ("", "/"):
        if scheme == "ssh":
            raise ValueError(f"a path ('{parts.path}') is not allowed in an ssh:// URL; set ssh.socket instead")
        raise ValueError(f"a path ('{parts.path}') is not allowed in a {scheme}:// URL; give only host:port")
    host = parts.hostname
    if not host:
        raise ValueError(f"{scheme}:// needs a host, e.g. {scheme}://docker01.example.internal:2375")
    _check_host(host)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in '{raw}'; expected a number from 1 to 65535") from None
    if port is None:
        port = 22 if scheme == "ssh" else 2376 if scheme == "https" or (scheme == "tcp" and tls) else 2375
    elif port == 0:
        raise ValueError("port must be from 1 to 65535, got 0")
    return f"{scheme}://{user + '@' if user else ''}{_bracket(host)}:{port}", scheme


def _ssh_user(userinfo: str) -> str:
    if ":" in userinfo:
        raise ValueError("passwords are not accepted in an ssh:// URL; fleetd logs in with keys only")
    if not _SSH_USER.fullmatch(userinfo):
        raise ValueError(f"invalid user name '{userinfo}' in the ssh:// URL")
    return userinfo


def parse_listen(raw: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` or ``"[::1]:8080"`` → ``(host, port)``; ValueError with a message if bad."""
    text = raw.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"missing ']' in '{raw}'; write IPv6 addresses as [::1]:8080")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"expected [address]:port, got '{raw}'")
        port_text = rest[1:]
        _check_host(host, ipv6=True)
    else:
        if text.count(":") > 1:
            raise ValueError(f"IPv6 addresses need brackets, e.g. '[::1]:8080' (quoted in YAML), not '{raw}'")
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"expected host:port, e.g. 127.0.0.1:8080, got '{raw}'")
        if not host:
            raise ValueError(f"missing host in '{raw}'; use 0.0.0.0{text} to listen on all interfaces")
        _check_host(host)
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"invalid port '{port_text}'; expected a number from 1 to 65535")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be from 1 to 65535, got {port}")
    return host, port


def _check_host(host: str, *, ipv6: bool = False) -> None:
    if ipv6 or ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv6 address '{host}'") from None
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"invalid host name '{host}'")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
