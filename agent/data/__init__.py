"""Observation tables and the bundled datasets (loaded on request, never at import)."""

from agent.data.observations import DuplicateReport, Observations, load_dataset, read_designs, read_observations

__all__ = ["DuplicateReport", "Observations", "load_dataset", "read_designs", "read_observations"]
