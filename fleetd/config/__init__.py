"""fleetd's configuration: YAML → frozen, typed :class:`Settings`; errors as ``file:line: field: message``.

settings = load_config(Path("/etc/fleetd/fleetd.yaml"))   # raises ConfigError(problems=[...])
"""

from __future__ import annotations

from fleetd.config.durations import format_duration, parse_duration
from fleetd.config.errors import ConfigError, Problem
from fleetd.config.loader import load_config
from fleetd.config.model import (
    AnswerLimits,
    AuthSettings,
    HostSettings,
    ListenTLSSettings,
    LogSettings,
    PollSettings,
    RetentionSettings,
    Role,
    Settings,
    SnapshotSettings,
    SSHSettings,
    TLSSettings,
    TokenSettings,
)

__all__ = [
    "AnswerLimits",
    "AuthSettings",
    "ConfigError",
    "HostSettings",
    "ListenTLSSettings",
    "LogSettings",
    "PollSettings",
    "Problem",
    "RetentionSettings",
    "Role",
    "SSHSettings",
    "Settings",
    "SnapshotSettings",
    "TLSSettings",
    "TokenSettings",
    "format_duration",
    "load_config",
    "parse_duration",
]
