"""The Engine client's error tree.

    DockerError
    ├── EngineUnreachable        no usable connection: refused, reset, DNS, TLS handshake
    │   └── EngineTLSError       TLS handshake or certificate failure
    ├── EngineTimeout            connect or total timeout elapsed
    ├── EngineHTTPError          the daemon answered with a non-2xx status
    │   ├── EngineNotFound       404
    │   └── EngineConflict       409
    ├── EngineProtocolError      an answer that cannot be used: invalid JSON, wrong shape, a redirect,
    │   │                        a content type or encoding no Docker daemon sends
    │   └── EngineLimitExceeded  the answer is larger than the client's cap for that endpoint
    ├── EngineSSHError           ssh:// refused fleetd: host key, authentication, remote socket
    └── EngineVersionError       no API version both sides speak

A body cut short (the connection reset mid-answer) is EngineUnreachable: a transport failure.

``down`` in the fleet means EngineUnreachable/EngineTimeout; ``error`` means the rest.
"""

from __future__ import annotations

__all__ = [
    "DockerError",
    "EngineConflict",
    "EngineHTTPError",
    "EngineLimitExceeded",
    "EngineNotFound",
    "EngineProtocolError",
    "EngineSSHError",
    "EngineTLSError",
    "EngineTimeout",
    "EngineUnreachable",
    "EngineVersionError",
]


class DockerError(Exception):
    """Base of every error the Engine client raises. ``str()`` is a sentence a person can act on."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.url = url

    def __str__(self) -> str:
        return self.message


class EngineUnreachable(DockerError):
    """The daemon could not be reached or dropped the connection."""


class EngineTLSError(EngineUnreachable):
    """TLS handshake or certificate verification failed."""


class EngineTimeout(DockerError):
    """The daemon did not answer within the timeout."""


class EngineHTTPError(DockerError):
    """The daemon answered with a non-2xx status; ``message`` is the daemon's own."""

    def __init__(self, status: int, message: str, *, url: str = "") -> None:
        super().__init__(message, url=url)
        self.status = status

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"


class EngineNotFound(EngineHTTPError):
    """404 from the daemon (no such container, image, ...)."""


class EngineConflict(EngineHTTPError):
    """409 from the daemon (name in use, container running, ...)."""


class EngineProtocolError(DockerError):
    """An answer that is not what the Engine API specifies (and not an HTTP error status)."""


class EngineLimitExceeded(EngineProtocolError):
    """The answer exceeds the cap for its endpoint (``limit_name``, ``limit`` bytes); reading stopped."""

    def __init__(self, message: str, *, limit_name: str, limit: int, url: str = "") -> None:
        super().__init__(message, url=url)
        self.limit_name = limit_name
        self.limit = limit


class EngineSSHError(DockerError):
    """The SSH server was reached but will not carry fleetd to the daemon; ``reason`` says why:
    ``host-key`` (unknown or changed), ``auth`` (key refused, unreadable identity), ``socket``
    (remote socket missing or not permitted), ``forwarding`` (sshd forbids stream-local channels),
    ``protocol`` (no common algorithm and the like)."""

    def __init__(self, reason: str, message: str, *, url: str = "") -> None:
        super().__init__(message, url=url)
        self.reason = reason


class EngineVersionError(DockerError):
    """The daemon's API versions and ours do not overlap."""


def http_error(status: int, message: str, *, url: str = "") -> EngineHTTPError:
    cls: type[EngineHTTPError]
    if status == 404:
        cls = EngineNotFound
    elif status == 409:
        cls = EngineConflict
    else:
        cls = EngineHTTPError
    return cls(status, message, url=url)
