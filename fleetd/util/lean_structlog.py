"""structlog without rich, for the command line's processes.

structlog imports rich (and pygments) when it is installed, only to render tracebacks in its console
renderer: 60-70 ms of every start and 4.9 MiB of resident memory (measured on the lab machine),
in ``fleetd run`` too, whose logs are JSON lines (the console rendering then prints tracebacks
plainly). fleetd's own commands that draw with rich (``fleetd ps``, ...) import it as usual
afterwards: it is hidden only while structlog is imported.
"""

from __future__ import annotations

import sys

__all__ = ["import_structlog_without_rich"]


def import_structlog_without_rich() -> None:
    if "structlog" in sys.modules or "rich" in sys.modules:
        return  # too late (or rich is in use already): nothing to gain
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]
