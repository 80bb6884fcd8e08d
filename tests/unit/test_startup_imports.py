"""What ``fleetd run`` imports before its first polls: not the HTTP server side, not rich."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import fleetd.cli, fleetd.service.runner
loaded = [m for m in ("rich", "aiohttp.web", "fleetd.api", "fleetd.api.app", "fleetd.dockercompat") if m in sys.modules]
import structlog
structlog.get_logger("probe").info("works")
import rich.console  # fleetd's own rich commands import it as usual afterwards
print(",".join(loaded) or "none")
"""


def test_the_service_imports_neither_the_http_side_nor_rich_before_it_polls() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "none", out.stdout + out.stderr
