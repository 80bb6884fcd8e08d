"""Benchmarks and load generators; run from the repository root (``python -m bench.<name>``)."""
