"""The local SLURM of the scheduler tests lives in `oracles.testing.slurm` (benchmarks use it too)."""

from oracles.testing.slurm import LocalSlurm, missing_binaries, start_local_slurm

__all__ = ["LocalSlurm", "missing_binaries", "start_local_slurm"]
