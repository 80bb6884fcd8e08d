"""Test doubles for the Docker Engine API: :class:`FakeEngine` (one server) and :class:`FakeFleet`."""

from __future__ import annotations

from .behaviour import (
    ENDPOINTS,
    FOLLOW_API_VERSION,
    Endpoint,
    EngineBehaviour,
    Fault,
    docker_20_10,
    docker_29,
    podman,
)
from .core import EngineCore, RecordedRequest
from .engine import FakeEngine, FakeEngines
from .fleet import FakeFleet, FleetEngine
from .model import STATE_CYCLE, EngineState, FakeContainer, FakeImage

__all__ = [
    "ENDPOINTS",
    "FOLLOW_API_VERSION",
    "STATE_CYCLE",
    "Endpoint",
    "EngineBehaviour",
    "EngineCore",
    "EngineState",
    "FakeContainer",
    "FakeEngine",
    "FakeEngines",
    "FakeFleet",
    "FakeImage",
    "Fault",
    "FleetEngine",
    "RecordedRequest",
    "docker_20_10",
    "docker_29",
    "podman",
]
