"""One poll of one host: ``/info`` and ``/containers/json?all=1`` at once, and ``/images/json`` when due;
or, while the host's event stream is healthy, the container list alone (:func:`fetch_lean`).

Fetching writes nothing: it returns what the daemon said (:class:`Answer`) or why it failed
(:class:`Failed`); the host loop turns that into records and hands them to the state's writer. The
container list comes back undecoded: the host's record builder decodes only what changed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import msgspec
import structlog

from fleetd.dockerapi import (
    DockerClient,
    DockerError,
    EngineTimeout,
    EngineUnreachable,
    ImageSummary,
    SystemInfo,
)
from fleetd.fleet.records import HostStatus
from fleetd.fleet.safety_net import SafetyNet

__all__ = ["Answer", "Failed", "fetch", "fetch_kept", "fetch_lean"]

log = structlog.get_logger("fleetd.poller")


@dataclass(frozen=True, slots=True)
class Answer:
    info: SystemInfo | None  # None: a lean poll (the host's facts stay as they were)
    info_raw: msgspec.Raw | None
    containers: bytes  # the /containers/json answer, JSON not yet decoded
    images: list[ImageSummary] | None  # None: not asked for


@dataclass(frozen=True, slots=True)
class Failed:
    status: HostStatus  # DOWN: no usable HTTP answer; ERROR: an unusable one
    message: str


def _failure(errors: list[DockerError]) -> Failed:
    unreachable = [e for e in errors if isinstance(e, (EngineUnreachable, EngineTimeout))]
    if unreachable:
        return Failed(HostStatus.DOWN, str(unreachable[0]))
    return Failed(HostStatus.ERROR, str(errors[0]))


async def fetch(client: DockerClient, host: str, *, images: bool, one_connection: bool = False) -> Answer | Failed:
    """``one_connection``: the requests one after the other on one keep-alive connection (fleets with
    more hosts than two connections each would fit in the open-file limit); a failed ``/info`` ends
    the poll then (a hung daemon costs one timeout, not two)."""
    info_r: tuple[SystemInfo, msgspec.Raw] | BaseException
    cont_r: bytes | BaseException
    img_r: list[ImageSummary] | BaseException | None = None

    # /images/json follows /info on the connection /info just freed: a poll needs two
    # connections per host instead of three (a third fewer connects at start-up).
    async def info_then_images() -> tuple[SystemInfo, msgspec.Raw]:
        nonlocal img_r
        info = await client.system.info_raw()
        if images:
            try:
                img_r = await client.images.list()
            except Exception as exc:  # judged below with the other answers
                img_r = exc
        return info

    if one_connection:
        try:
            info_r = await info_then_images()
        except Exception as exc:
            return _judge(host, exc) or Failed(HostStatus.ERROR, repr(exc))
        try:
            cont_r = await client.containers.list_body(all=True)
        except Exception as exc:
            cont_r = exc
    else:
        info_r, cont_r = await asyncio.gather(
            info_then_images(), client.containers.list_body(all=True), return_exceptions=True
        )
    failed = _judge(host, info_r, cont_r, img_r)
    if failed is not None:
        return failed
    assert not isinstance(info_r, BaseException) and not isinstance(cont_r, BaseException)  # judged
    return Answer(info_r[0], info_r[1], cont_r, img_r if isinstance(img_r, list) else None)


async def fetch_lean(client: DockerClient, net: SafetyNet, host: str, *, timeout: float) -> Answer | Failed:
    """A safety-net poll while the host's event stream is healthy: the container list alone."""
    try:
        body = await net.list_body(timeout)
    except Exception as exc:
        return _judge(host, exc) or Failed(HostStatus.ERROR, repr(exc))
    return Answer(None, None, body, None)


async def fetch_kept(
    client: DockerClient, net: SafetyNet, host: str, *, images: bool, timeout: float
) -> Answer | Failed:
    """A full poll while the host's event stream is healthy: ``/info``, the images when due and the
    list, one after the other on the watcher's kept connection (as ``fetch(one_connection=True)``:
    a failed ``/info`` ends the poll)."""
    try:
        info, info_raw = await net.info_raw(timeout)
    except Exception as exc:
        return _judge(host, exc) or Failed(HostStatus.ERROR, repr(exc))
    img_r: list[ImageSummary] | BaseException | None = None
    cont_r: bytes | BaseException
    if images:
        try:
            img_r = await net.images(timeout)
        except Exception as exc:  # judged below with the list
            img_r = exc
    try:
        cont_r = await net.list_body(timeout)
    except Exception as exc:
        cont_r = exc
    failed = _judge(host, cont_r, img_r)
    if failed is not None:
        return failed
    assert not isinstance(cont_r, BaseException)  # judged
    return Answer(info, info_raw, cont_r, img_r if isinstance(img_r, list) else None)


def _judge(host: str, *results: object) -> Failed | None:
    """The failure among a poll's results (None: every request answered)."""
    errors: list[DockerError] = []
    for r in results:
        if isinstance(r, DockerError):
            errors.append(r)
        elif isinstance(r, asyncio.CancelledError):
            raise r
        elif isinstance(r, BaseException):
            log.error("poll failed unexpectedly", host=host, exc_info=r)
            errors.append(DockerError(f"internal error while polling: {r!r}"))
    return _failure(errors) if errors else None
