"""Benchmarks: scripts that print a table (and write JSON with ``--json PATH``)."""
