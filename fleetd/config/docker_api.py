"""``docker_api:``: the Docker-compatible second listener (off unless this section is present).

    docker_api:
      listen: 127.0.0.1:2377            # or unix:///run/fleetd/docker.sock
      socket_mode: "0660"               # unix sockets only
      tls: {cert: server.pem, key: server-key.pem, ca: clients-ca.pem}   # ca: mutual TLS
      client_roles: {ci-runner: operator, grafana: viewer}               # client certificate CN → role
      require_token: true               # default: true when auth.tokens are configured
      read_only: false

Anything but loopback or a unix socket is refused without mutual TLS: this port is root on every host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from fleetd.config.fields import Section
from fleetd.config.roles import Role
from fleetd.config.urls import parse_listen
from fleetd.config.yamlsrc import Map

__all__ = ["DOCKER_API_KEYS", "DockerAPISettings", "DockerAPITLS", "is_loopback_host", "read_docker_api"]

DOCKER_API_KEYS = ("listen", "socket_mode", "tls", "client_roles", "require_token", "read_only")
TLS_KEYS = ("cert", "key", "ca")
_ROLES: dict[str, Role] = {"viewer": "viewer", "operator": "operator", "admin": "admin"}


@dataclass(frozen=True, slots=True)
class DockerAPITLS:
    cert: Path
    key: Path
    ca: Path | None = None  # set: clients must present a certificate signed by it


@dataclass(frozen=True, slots=True)
class DockerAPISettings:
    host: str | None = None  # TCP listener
    port: int = 2377
    unix_path: Path | None = None  # unix socket listener
    socket_mode: int = 0o660
    tls: DockerAPITLS | None = None
    client_roles: Mapping[str, Role] = field(default_factory=lambda: MappingProxyType({}))
    require_token: bool | None = None  # None: required when auth.tokens exist
    read_only: bool = False
    source: str = ""  # file:line of the section, for messages

    @property
    def address(self) -> str:
        if self.unix_path is not None:
            return f"unix://{self.unix_path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{'https' if self.tls else 'tcp'}://{host}:{self.port}"


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_docker_api(top: Section, *, config_dir: Path) -> DockerAPISettings | None:
    sec = top.section("docker_api", DOCKER_API_KEYS)
    if sec is None:
        return None
    source = f"{sec.file}:{sec.line}"
    host: str | None = None
    port = 2377
    unix_path: Path | None = None
    listen = sec.text("listen", required=True)
    if listen is not None:
        text = listen.strip()
        if text.startswith("unix://"):
            path = text.removeprefix("unix://")
            if not path.startswith("/"):
                sec.problem("listen", "unix:// needs an absolute socket path, e.g. unix:///run/fleetd/docker.sock")
            else:
                unix_path = Path(path)
        else:
            try:
                host, port = parse_listen(text.removeprefix("tcp://"))
            except ValueError as exc:
                sec.problem("listen", f"{exc} (or unix:///path/to/docker.sock)")
    mode = 0o660
    mode_text = sec.text("socket_mode", coerce=True)
    if mode_text is not None:
        try:
            mode = int(mode_text, 8)
            if not 0 <= mode <= 0o777:
                raise ValueError
        except ValueError:
            sec.problem("socket_mode", f"expected an octal file mode such as \"0660\", got '{mode_text}'")
        else:
            if mode & 0o007:
                sec.problem("socket_mode", f"{mode_text} lets every local user drive every host; use 0660 or stricter")
    tls = _read_tls(sec, config_dir)
    roles: dict[str, Role] = {}
    roles_node = sec.get("client_roles")
    if roles_node is not None:
        sub = sec.section("client_roles", list(roles_node.entries) if isinstance(roles_node, Map) else [])
        if sub is not None:
            for key in sub.node.entries:
                role = sub.choice(key, _ROLES)
                if role is not None:
                    roles[key] = role
        if tls is None or tls.ca is None:
            sec.problem("client_roles", "client certificate roles need mutual TLS: set docker_api.tls.ca")
    settings = DockerAPISettings(
        host=host,
        port=port,
        unix_path=unix_path,
        socket_mode=mode,
        tls=tls,
        client_roles=MappingProxyType(roles),
        require_token=sec.boolean("require_token"),
        read_only=bool(sec.boolean("read_only")),
        source=source,
    )
    if host is not None and not is_loopback_host(host) and (tls is None or tls.ca is None):
        sec.problem(
            "listen",
            f"refusing to listen on {host}:{port} (not a loopback address) without mutual TLS: "
            "this port is root on every host; set docker_api.tls (cert, key and ca, the CA that "
            "signs client certificates) or listen on 127.0.0.1 or a unix socket",
        )
    if unix_path is not None and tls is not None:
        sec.problem("tls", "TLS is for TCP listeners; a unix socket is protected by its file mode")
    return settings


def _read_tls(sec: Section, config_dir: Path) -> DockerAPITLS | None:
    tls = sec.section("tls", TLS_KEYS)
    if tls is None:
        return None
    cert = tls.readable_file("cert", config_dir, required=True)
    key = tls.readable_file("key", config_dir, required=True)
    ca = tls.readable_file("ca", config_dir)
    if cert is None or key is None:
        return None
    return DockerAPITLS(cert=cert, key=key, ca=ca)
