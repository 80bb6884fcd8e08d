"""Webhooks: a JSON POST to each configured receiver for every fleet event it asked for.

The fleet events come from one source (an async iterator of :class:`~fleetd.fleet.feed.FleetEvent`,
normally a subscription to the fleet feed the SSE stream reads); :mod:`.notices` turns them into the
kinds a person wants to be told about, :mod:`.sender` delivers them (one bounded queue and one task per
receiver, retries with backoff), :mod:`.service` owns it all. Not fleetd/service/notify.py (sd_notify).
"""

from __future__ import annotations

from fleetd.webhooks.notices import Notice, notices_for
from fleetd.webhooks.service import WebhookService

__all__ = ["Notice", "WebhookService", "notices_for"]
