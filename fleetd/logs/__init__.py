"""Container logs as a use case: one container's lines, followed, and many containers merged.

The API's handlers only parse parameters and write what :class:`LogStream` yields; everything else
(resolving targets, following upstream streams with bounded buffers, ordering by timestamp within a
window, picking up containers that start later, closing every upstream stream) lives here.
"""

from __future__ import annotations

from fleetd.logs.entries import LogEnd, LogEntry, LogError, parse_timestamp
from fleetd.logs.hub import LogStreams, TooManyStreams
from fleetd.logs.stream import LogStream, Selection, StreamOptions, Target

__all__ = [
    "LogEnd",
    "LogEntry",
    "LogError",
    "LogStream",
    "LogStreams",
    "Selection",
    "StreamOptions",
    "Target",
    "TooManyStreams",
    "parse_timestamp",
]
