"""The Docker hosts: the config file's ``hosts:`` list plus an optional inventory file of the same shape."""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

from fleetd.config.durations import format_duration
from fleetd.config.errors import Problems
from fleetd.config.fields import Section, describe
from fleetd.config.model import HostSettings, PollSettings, TLSSettings
from fleetd.config.ranges import INTERVAL_MAX, TIMEOUT_MAX
from fleetd.config.ssh import read_ssh
from fleetd.config.tls_files import TLSCheck
from fleetd.config.urls import normalise_engine_url
from fleetd.config.yamlsrc import Map, Node, Scalar, join_field, load_mapping

__all__ = ["NAME_RE", "NAME_RULE", "read_hosts", "timing_message"]

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
NAME_RULE = "use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
HOST_KEYS = ("name", "url", "labels", "tls", "ssh", "interval", "timeout", "enabled", "events")
TLS_KEYS = ("ca", "cert", "key", "verify")
INVENTORY_KEYS = ("hosts",)


def read_hosts(
    top: Section, *, config_dir: Path, poll: PollSettings, poll_valid: bool
) -> tuple[tuple[HostSettings, ...], Path | None]:
    """Hosts from ``hosts:`` and then from the ``inventory:`` file; names must be unique across both.

    Hosts inherit poll.interval / poll.timeout; *poll_valid* is False when either was rejected, and then
    hosts that override only one of them are not cross-checked against the other.
    """
    reader = _HostReader(top.problems, poll, poll_valid)
    reader.read_list(top, base=config_dir)
    inventory = top.path("inventory", config_dir)
    if inventory is not None:
        written = top.text("inventory") or ""
        display = written if Path(written).is_absolute() else str(Path(top.file).parent / written)
        root = load_mapping(
            inventory,
            display,
            top.problems,
            what="inventory file",
            read_error_at=(top.file, top.value_line("inventory"), "inventory"),
        )
        if root is not None:
            inv = Section(root, file=display, field="", allowed=INVENTORY_KEYS, problems=top.problems)
            if "hosts" not in root.entries:
                top.problems.add(display, root.line, "hosts", "missing required key 'hosts' (a list)")
            reader.read_list(inv, base=inventory.parent)
    return tuple(reader.hosts), inventory


class _HostReader:
    def __init__(self, problems: Problems, poll: PollSettings, poll_valid: bool) -> None:
        self.problems = problems
        self.poll = poll
        self.poll_valid = poll_valid
        self.tls_check = TLSCheck()
        self.hosts: list[HostSettings] = []
        self._names: dict[str, str] = {}  # name -> "file:line" of its first declaration

    def read_list(self, parent: Section, *, base: Path) -> None:
        for index, node in enumerate(parent.sequence("hosts")):
            host = self._read_host(node, parent.file, f"hosts[{index}]", base)
            if host is not None:
                self.hosts.append(host)

    def _read_host(self, node: Node, file: str, field: str, base: Path) -> HostSettings | None:
        sec = Section.of(node, file=file, field=field, allowed=HOST_KEYS, problems=self.problems)
        if sec is None:
            return None
        name = self._name(sec)
        tls, tls_given = _read_tls(sec, base, self.tls_check)
        url, tls = _read_url(sec, tls, tls_given)
        ssh = read_ssh(sec, base, url, url.split("://", 1)[0] if url else None)
        labels = _read_labels(sec)
        interval, timeout = self._times(sec)
        enabled = sec.boolean("enabled")
        events = sec.boolean("events")
        if name is None or url is None:
            return None
        return HostSettings(
            name=name,
            url=url,
            labels=labels,
            tls=tls,
            interval=interval,
            timeout=timeout,
            enabled=True if enabled is None else enabled,
            source=f"{file}:{sec.line}",
            events=events is not False,
            ssh=ssh,
        )

    def _name(self, sec: Section) -> str | None:
        name = sec.text("name", required=True, coerce=True)
        if name is None:
            return None
        if not NAME_RE.fullmatch(name):
            sec.problem("name", f"invalid host name '{name}'; {NAME_RULE}")
            return None
        first = self._names.get(name)
        if first is not None:
            sec.problem("name", f"duplicate host name '{name}'; first declared at {first}")
            return None
        self._names[name] = f"{sec.file}:{sec.line}"
        return name

    def _times(self, sec: Section) -> tuple[float, float]:
        """Effective (interval, timeout); reports a timeout not below the interval."""
        interval = sec.duration("interval", maximum=INTERVAL_MAX)
        timeout = sec.duration("timeout", maximum=TIMEOUT_MAX)
        eff_interval = self.poll.interval if interval is None else interval
        eff_timeout = self.poll.timeout if timeout is None else timeout
        if sec.invalid & {"interval", "timeout"} or (interval is None and timeout is None):
            return eff_interval, eff_timeout
        if (interval is None or timeout is None) and not self.poll_valid:
            return eff_interval, eff_timeout
        if eff_timeout >= eff_interval:
            blame = "timeout" if timeout is not None else "interval"
            inherited = "interval" if blame == "timeout" else "timeout"
            note = f" (poll.{inherited})" if sec.get(inherited) is None else ""
            sec.problem(blame, timing_message(blame, eff_interval, eff_timeout, note))
        return eff_interval, eff_timeout


def timing_message(blame: str, interval: float, timeout: float, note: str) -> str:
    """Why a timeout not below its interval is refused, worded for the key blamed (*note* names the other)."""
    interval_text, timeout_text = format_duration(interval), format_duration(timeout)
    if blame == "timeout":
        return f"timeout {timeout_text} must be less than the interval {interval_text}{note}"
    return f"interval {interval_text} must be greater than the timeout {timeout_text}{note}"


def _read_url(
    host: Section, tls: TLSSettings | None, tls_given: bool
) -> tuple[str | None, TLSSettings | None]:
    """The normalised url, and the TLS settings it implies (https:// alone: system CAs, verified)."""
    text = host.text("url", required=True)
    if text is None:
        return None, tls
    try:
        url, scheme = normalise_engine_url(text, tls=tls_given)
    except ValueError as exc:
        host.problem("url", str(exc))
        return None, tls
    if tls_given and scheme in ("http", "unix", "ssh"):
        host.problem("tls", f"{scheme}:// does not use TLS; use https:// or tcp:// with a tls: block")
    if scheme == "https" and tls is None and not tls_given:
        tls = TLSSettings()
    return url, tls


def _read_tls(host: Section, base: Path, check: TLSCheck) -> tuple[TLSSettings | None, bool]:
    """The host's ``tls:`` block and whether one was given (even an invalid one); its files are
    loaded as the client will load them, so a CA or key pair that cannot be used is reported here."""
    if not host.has("tls"):
        return None, False
    sec = host.section("tls", TLS_KEYS)
    if sec is None:
        return None, True
    ca = sec.readable_file("ca", base)
    cert = sec.readable_file("cert", base)
    key = sec.readable_file("key", base)
    for given, missing in (("cert", "key"), ("key", "cert")):
        if sec.has(given) and not sec.has(missing):
            sec.problem(given, f"'{given}' given without '{missing}'; a client certificate needs both")
    if not sec.invalid & {"ca", "cert", "key"} and (ca is not None or (cert and key)):
        found = check.client(ca, cert if key else None, key)
        if found is not None:
            sec.problem(*found)
    verify = sec.boolean("verify")
    return TLSSettings(ca=ca, cert=cert, key=key, verify=True if verify is None else verify), True


def _read_labels(host: Section) -> MappingProxyType[str, str]:
    labels: dict[str, str] = {}
    node = host.get("labels")
    if node is None:
        return MappingProxyType(labels)
    if not isinstance(node, Map):
        host.problem("labels", f"expected a mapping of label names to values, got {describe(node)}")
        return MappingProxyType(labels)
    field = host.sub("labels")
    for key, entry in node.entries.items():
        value = entry.value
        where = join_field(field, key)
        if not key.strip():
            host.problems.add(host.file, entry.key_line, where, "label names must not be empty")
        elif not isinstance(value, Scalar) or value.value is None:
            host.problems.add(
                host.file,
                value.line,
                where,
                f"label values must be strings, got {describe(value)}"
                + ("; write '' for an empty value" if isinstance(value, Scalar) else ""),
            )
        else:  # numbers, booleans, dates: as written, so 1.10 stays "1.10" and yes stays "yes"
            labels[key] = value.value if isinstance(value.value, str) else value.text
    return MappingProxyType(labels)
