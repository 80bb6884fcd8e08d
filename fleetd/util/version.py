"""fleetd's own version, from the installed distribution."""

from __future__ import annotations

import functools
import importlib.metadata

__all__ = ["fleetd_version"]


@functools.cache
def fleetd_version() -> str:
    try:
        return importlib.metadata.version("fleetd")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"
