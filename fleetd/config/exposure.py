"""Whether the API would be open to the network: a rule of the configuration, checked before listening."""

from __future__ import annotations

import ipaddress

from fleetd.config.model import Settings

__all__ = ["anonymous_reads", "exposure_problem", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name could resolve to anything: treat as exposed


def anonymous_reads(settings: Settings) -> bool:
    """Whether reads need no token: asked for, or no tokens at all while listening on loopback."""
    auth = settings.auth
    return auth.anonymous_read or (not auth.tokens and is_loopback(settings.listen_host))


def exposure_problem(settings: Settings) -> str | None:
    """Why fleetd must not start with these settings, or None. Called by ``fleetd run``/``check-config``."""
    auth = settings.auth
    if auth.tokens or auth.anonymous_read or is_loopback(settings.listen_host):
        return None
    return (
        f"{settings.path}: auth: refusing to listen on {settings.listen_host}:{settings.listen_port} "
        "(not a loopback address) without API tokens; add auth.tokens (name, token_sha256 or token_file, "
        "role) to the config, or set auth.anonymous_read: true to allow unauthenticated reads there"
    )
