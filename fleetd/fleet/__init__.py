"""The fleet: records, the aggregate and its change signal, polling, findings (no HTTP, no storage)."""
