from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from agent.core.errors import DesignError
from agent.core.materials import get_material
from agent.core.observations import Observations
from agent.design.trained import training_data
from oracles.base import ErrorClass, Handle, JobStatus, OracleError
from oracles.mock import MockOracle
from tests.oracles.helpers import submit_then_sigkill, wait_terminal

UNSTRAINED = [[3.16, 3.16, 12.30, 90.0, 90.0, 120.0, 0.0]]


@pytest.fixture(scope="module")
def data() -> Observations:
    return training_data(get_material("mos2"))


def test_emulator_follows_the_real_data(tmp_path: Path, data: Observations) -> None:
    oracle = MockOracle(workdir=tmp_path)
    gaps = oracle.gap(data.X)
    mae = float(np.abs(gaps - data.y).mean())
    assert mae < 0.03, f"the emulator should track the VASP gaps it was fitted to (MAE {mae:.3f})"
    assert (gaps >= 0).all()
    assert 1.0 < oracle.gap(UNSTRAINED)[0] < 1.6, "the data put the unstrained cell at 1.2-1.4 eV"


def test_submit_poll_results_with_latency(tmp_path: Path) -> None:
    oracle = MockOracle(workdir=tmp_path, latency_s=0.3)
    handles = oracle.submit(UNSTRAINED * 2)
    assert oracle.poll(handles) == [JobStatus.RUNNING] * 2
    time.sleep(0.35)
    results = oracle.results(handles)
    assert [r.status for r in results] == [JobStatus.COMPLETED] * 2
    assert results[0].values == results[1].values, "deterministic without noise"
    assert oracle.submissions() == 2


def test_failures_are_classified_and_reproducible(tmp_path: Path, data: Observations) -> None:
    oracle = MockOracle(workdir=tmp_path, failure_rate=0.4, noise_eV=0.05, seed=3)
    designs = data.X[:200]
    first = oracle.results(oracle.submit(designs))
    kinds = {r.error_class for r in first if r.status is JobStatus.FAILED}
    assert kinds == {ErrorClass.PHYSICS, ErrorClass.INFRASTRUCTURE}
    assert 0.25 < sum(r.status is JobStatus.FAILED for r in first) / 200 < 0.55
    again = MockOracle(workdir=tmp_path, failure_rate=0.4, noise_eV=0.05, seed=3).results(oracle.submit(designs))
    for a, b in zip(first, again, strict=True):
        if a.error_class is ErrorClass.PHYSICS:
            assert b.error_class is ErrorClass.PHYSICS, "a physics failure repeats for the same design"


def test_lost_and_cancelled_jobs(tmp_path: Path) -> None:
    oracle = MockOracle(workdir=tmp_path, latency_s=60)
    h1, h2 = oracle.submit(UNSTRAINED * 2)
    oracle.cancel([h1])
    ghost = Handle("mock", "no-such-job", h2.design, submitted_at=h2.submitted_at)
    assert oracle.poll([h1, h2, ghost]) == [JobStatus.CANCELLED, JobStatus.RUNNING, JobStatus.ABANDONED]
    with pytest.raises(OracleError, match="belongs to oracle 'table'"):
        oracle.poll([Handle("table", "x", h2.design)])


def test_bad_designs_and_settings(tmp_path: Path) -> None:
    oracle = MockOracle(workdir=tmp_path)
    with pytest.raises(DesignError, match="outside"):
        oracle.submit([[9.0, 3.16, 12.3, 90, 90, 120, 0]])
    with pytest.raises(DesignError, match="shape"):
        oracle.submit([[3.16, 3.16]])
    assert oracle.submissions() == 0, "nothing is submitted when any design is bad"
    with pytest.raises(OracleError, match="failure_rate"):
        MockOracle(workdir=tmp_path, failure_rate=2.0)
    os.environ["INNLOOP_MOCK_LATENCY_S"] = "soon"
    try:
        with pytest.raises(OracleError, match="INNLOOP_MOCK_LATENCY_S"):
            MockOracle(workdir=tmp_path)
    finally:
        del os.environ["INNLOOP_MOCK_LATENCY_S"]


def test_killed_submitter_is_reattached_without_resubmission(tmp_path: Path) -> None:
    """Process A submits, saves handles and is SIGKILLed; process B collects every result."""
    setup = f"from oracles.mock import MockOracle\no = MockOracle(workdir={str(tmp_path / 'mock')!r}, latency_s=1.0)\n"
    designs = [[3.16, 3.16, 12.3, 90, 90, 120, 0], [3.3, 3.0, 12.0, 95, 88, 118, 0.5]]
    handles = submit_then_sigkill(setup, designs, tmp_path / "handles.json")
    fresh = MockOracle(workdir=tmp_path / "mock", latency_s=1.0)
    wait_terminal(fresh.poll, handles)
    results = fresh.results(handles)
    assert [r.status for r in results] == [JobStatus.COMPLETED] * 2
    assert fresh.submissions() == 2, "re-attaching submitted nothing new"


def test_attempts_are_numbered_across_instances_and_old_folders(tmp_path: Path) -> None:
    """Two instances on one folder, and a folder of jobs without attempt claims, never reuse a number."""
    d = [3.16, 3.16, 12.3, 90.0, 90.0, 120.0, 0.0]
    a, b = MockOracle(workdir=tmp_path, seed=0), MockOracle(workdir=tmp_path, seed=0)
    handles = [o.submit([d])[0] for o in (a, b, a, a, b)]
    attempts = [json.loads((a.jobs / f"{h.job_id}.json").read_text())["attempt"] for h in handles]
    assert attempts == [0, 1, 2, 3, 4] and a.submissions() == 5
    for claim in a.claims.iterdir():  # a folder written before attempts were claimed
        claim.unlink()
    (h,) = MockOracle(workdir=tmp_path, seed=0).submit([d])
    assert json.loads((a.jobs / f"{h.job_id}.json").read_text())["attempt"] == 5


def test_heavy_tailed_run_times_and_infrastructure_only_failures(tmp_path: Path, data: Observations) -> None:
    oracle = MockOracle(
        workdir=tmp_path, latency_s=2.0, latency_sigma=1.1, failure_rate=0.1, infrastructure_share=1.0, seed=4
    )
    keys = [f"{k:012x}" for k in range(4000)]
    times = np.array([oracle.run_time(k, 0) for k in keys])
    p50, p95 = np.percentile(times, [50, 95])
    assert 1.8 < p50 < 2.2 and 5.0 < p95 / p50 < 7.5, "log-normal: median latency_s, a 95th percentile 6x it"
    assert oracle.run_time(keys[0], 0) == oracle.run_time(keys[0], 0) != oracle.run_time(keys[0], 1)
    quickest = MockOracle(workdir=tmp_path / "t", latency_s=0.05, latency_sigma=1.5, seed=4)
    handles = quickest.submit(data.X[:40])
    time.sleep(0.05)
    done = [s.terminal for s in quickest.poll(handles)]
    assert 5 < sum(done) < 35, "each job runs its own time: about half are done at the median"
    quick = MockOracle(workdir=tmp_path / "q", failure_rate=0.3, infrastructure_share=1.0, seed=4)
    out = quick.results(quick.submit(data.X[:300]))
    failed = [r for r in out if r.status is JobStatus.FAILED]
    assert 0.2 < len(failed) / 300 < 0.4 and {r.error_class for r in failed} == {ErrorClass.INFRASTRUCTURE}
    with pytest.raises(OracleError, match="infrastructure_share"):
        MockOracle(workdir=tmp_path, infrastructure_share=1.5)
    with pytest.raises(OracleError, match="latency_sigma"):
        MockOracle(workdir=tmp_path, latency_sigma=-1)
