"""A Docker Engine API endpoint in front of the whole fleet: ``docker -H fleetd ps`` and docker-py.

One concept per module: :mod:`.listener` (the second listener's life), :mod:`.app` (request
pipeline), :mod:`.routes` (the route table), :mod:`.versions` (API version negotiation),
:mod:`.identity` (which container a reference means), :mod:`.reads` (answers from the
aggregate), :mod:`.proxy` (actions forwarded to the owning daemon), :mod:`.hijack` (attach and
exec streams), :mod:`.placement` (where ``create`` goes), :mod:`.security` (who may call what),
:mod:`.events` (``docker events`` across the fleet).
"""

from __future__ import annotations

from fleetd.dockercompat.listener import DockerListener

__all__ = ["DockerListener"]
