"""The command line for people: client commands that talk to a running fleetd over its HTTP API.

``fleetd ps``, ``hosts``, ``host``, ``logs``, ``images``, ``events``, ``stop|start|restart|rm``,
``snapshot take|list|show|diff`` and ``completion``; see :mod:`fleetd.ctl.parser` for the grammar.
They never reach a Docker daemon themselves.
"""

from __future__ import annotations

from fleetd.ctl.parser import add_commands

__all__ = ["add_commands"]
