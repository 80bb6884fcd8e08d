"""What a fake Engine publishes on ``/events`` for each change, and changes tests make happen.

Mixed into :class:`~tests.fakes.core.EngineCore`: the container actions call :meth:`emit`; tests call
:meth:`set_state` (a process dying or starting on its own), :meth:`exec_noise`, :meth:`set_health` and
:meth:`restart_daemon`.
"""

from __future__ import annotations

import time

from .behaviour import EngineBehaviour
from .events import EventLog
from .model import EngineState, FakeContainer

__all__ = ["ContainerEvents"]


class ContainerEvents:
    behaviour: EngineBehaviour
    state: EngineState
    events: EventLog

    def emit(self, container: FakeContainer, action: str, **attributes: str) -> None:
        """Publish a container event; Attributes are labels + image + name, like dockerd's."""
        attrs = {**container.labels, "image": container.image, "name": container.name, **attributes}
        self.events.publish("container", action, container.id, attrs)

    def _emit_died(self, container: FakeContainer, signal: str | None) -> None:
        if signal is not None:
            self.emit(container, "kill", signal=signal)
        code = str(container.exit_code)
        if self.behaviour.product == "podman":  # compat rewrites died→die and copies the exit code
            self.emit(container, "die", containerExitCode=code, exitCode=code)
            self.emit(container, "cleanup")
        else:
            self.emit(container, "die", exitCode=code)

    def set_state(self, ref: str, state: str, exit_code: int = 0) -> FakeContainer:
        """Change a container as if its process started or died on its own (with the events)."""
        container = self.state.lookup(ref)
        if container is None:
            raise KeyError(ref)
        now = time.time()
        if state == "running":
            container.state, container.started_at, container.exit_code = "running", now, 0
            self.emit(container, "start")
        else:
            container.state, container.finished_at, container.exit_code = "exited", now, exit_code
            self._emit_died(container, None)
        return container

    def exec_noise(self, ref: str, command: str = "true") -> None:
        """What ``docker exec`` publishes: three events, none of which changes a container row."""
        container = self.state.lookup(ref)
        if container is None:
            raise KeyError(ref)
        if self.behaviour.product == "podman":
            self.emit(container, "exec")
            self.emit(container, "exec_died")
        else:
            self.emit(container, f"exec_create: {command}", execID="e" * 64)
            self.emit(container, f"exec_start: {command}", execID="e" * 64)
            self.emit(container, "exec_die", execID="e" * 64, exitCode="0")

    def set_health(self, ref: str, health: str) -> None:
        container = self.state.lookup(ref)
        if container is None:
            raise KeyError(ref)
        previous = container.health or ""
        container.health = health  # type: ignore[assignment]
        if self.behaviour.product == "podman":  # a bare action, carrying the previous status (P3)
            self.events.publish(
                "container", "health_status", container.id,
                {**container.labels, "image": container.image, "name": container.name},
                HealthStatus=previous,
            )  # fmt: skip
        else:
            self.emit(container, f"health_status: {health}")

    def restart_daemon(self) -> None:
        """The daemon restarted: every event stream ends; dockerd forgets its ring."""
        self.events.restart()
