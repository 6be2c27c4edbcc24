"""Shared fixtures: small, seeded, synthetic problems so unit tests stay fast, and one real
local SLURM per session, started only when a test asks for it."""

from __future__ import annotations

import os

# The sila2 oracle's tests run its client in this process, after other tests have loaded Ray,
# which loads protobuf: the SiLA 2 stack needs protobuf's pure-Python implementation, chosen
# before that (`oracles.sila2.use_pure_python_protobuf`; `innloop run` chooses it itself, which
# tests/oracles/test_sila2.py checks in a process of its own).
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from agent.models.surrogate import SurrogateEnsemble
from oracles.testing.slurm import LocalSlurm, start_local_slurm

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # small ops: more threads only add contention


def smooth_gap(U: np.ndarray) -> np.ndarray:
    """A gap-like function on the unit box: zero over a large region, smooth elsewhere."""
    return np.maximum(0.0, 1.6 * U[:, 0] + 0.8 * U[:, 1] - 0.9 + 0.2 * np.sin(3.0 * U[:, 2]))


@pytest.fixture(scope="session")
def synthetic_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    U = rng.random((3000, 3))
    return U, smooth_gap(U)


@pytest.fixture(scope="session")
def small_ensemble(synthetic_data: tuple[np.ndarray, np.ndarray]) -> SurrogateEnsemble:
    from agent.models.surrogate import EnsembleConfig

    U, y = synthetic_data
    model = SurrogateEnsemble(3, EnsembleConfig(members=4, hidden=64, layers=2, epochs=40, batch_size=128, seed=0))
    model.fit(U[:2500], y[:2500])
    return model


# Session fixtures that cost tens of seconds, and the worker group of the tests that use
# them: a session fixture is built once per worker, so its tests run on one (``--dist
# loadgroup``). SLURM also because one cluster serves the session.
SHARED = {
    "slurm_cluster": "slurm",
    "mock_report": "mock-report",
    "table_report": "table-report",
    "group_probe": "group-probe",  # tests/test_suite_groups.py: the groups take effect
    # Ray: tests that count this machine's Ray processes must not overlap ones that start some
    "local_ray": "ray",
    "ray_cluster": "ray",
    "prefect_server": "prefect-server",  # tests/flows: one `prefect server start` with its UI
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups off the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test that uses a `SHARED` fixture joins that fixture's worker group."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        group = next((g for fixture, g in SHARED.items() if fixture in names), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def group_probe() -> None:
    """Nothing: a `SHARED` fixture whose test checks that worker groups take effect."""


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    """munged + MariaDB + slurmdbd + slurmctld + slurmd on localhost for the session, limits
    enforced as at a site; ``SLURM_CONF`` points at it.

    Fails (does not skip) when the binaries are missing: CI installs them with
    ``scripts/install_slurm.sh``, and a silently skipped scheduler test proves nothing.
    """
    try:
        with start_local_slurm(tmp_path_factory.mktemp("slurm"), accounting=True) as cluster:
            yield cluster
    except RuntimeError as exc:
        if "not found" in str(exc) or "as root" in str(exc):
            pytest.fail(str(exc), pytrace=False)
        raise
