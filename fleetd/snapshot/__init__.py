"""Inventory snapshots: the record (model), diffs, exports, the service that takes them on schedule."""
