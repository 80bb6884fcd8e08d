"""Small helpers with no fleetd knowledge: time formats, rate limits, tasks."""
