"""Fixtures for the oracle tests: a real local SLURM, started only when a test asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oracles.testing.slurm import LocalSlurm, start_local_slurm


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    """munged + slurmctld + slurmd on localhost for the session; ``SLURM_CONF`` points at it.

    Fails (does not skip) when the binaries are missing: CI installs them with
    ``scripts/install_slurm.sh``, and a silently skipped scheduler test proves nothing.
    """
    try:
        with start_local_slurm(tmp_path_factory.mktemp("slurm")) as cluster:
            yield cluster
    except RuntimeError as exc:
        if "not found" in str(exc) or "as root" in str(exc):
            pytest.fail(str(exc), pytrace=False)
        raise
