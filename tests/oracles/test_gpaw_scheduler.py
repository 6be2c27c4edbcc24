"""The gpaw oracle's scheduler mode: real GPAW jobs through psij on the local SLURM, and the
folder queue's answer to a site limit (a submission refused "for now" waits its turn).

The SLURM test runs real GPAW at CI size (PW 300 eV, 3×3×1) and counts at the scheduler
(slurmctld's log of accepted ``sbatch`` calls): a submitter killed after its submit is
re-attached by native id from a fresh oracle, and nothing is submitted twice.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from oracles.base import ErrorClass, JobStatus, OracleError
from oracles.gpaw import GpawOracle
from oracles.job_runners import BatchRunner, LocalRunner
from oracles.scheduler import OUTPUT_GRACE_S, VERDICT, Scheduler, SiteLimit
from oracles.testing.slurm import LocalSlurm
from tests.oracles.helpers import submit_then_sigkill, wait_terminal

CI_DFT = {"ecut_eV": 300, "kpts": [3, 3, 1]}
DESIGN = {"a": 3.19, "b": 3.19, "c": 12.3, "alpha": 90.0, "beta": 90.0, "gamma": 120.0, "efield": 0.0}


def _settings(workdir: Path, cluster: LocalSlurm) -> dict[str, Any]:
    return {
        "workdir": workdir,
        "settings": CI_DFT,
        "executor": "slurm",
        "queue": cluster.partition,
        "walltime_s": 600,
        "memory_gb": 0.9,  # the local node offers 1000 MB
        "max_parallel": 2,
        "poll_interval_s": 1,
    }


@pytest.mark.slow
def test_real_gpaw_through_slurm_is_reattached_after_the_submitter_is_killed(
    tmp_path: Path, slurm_cluster: LocalSlurm
) -> None:
    workdir = tmp_path / "jobs"
    settings = _settings(workdir, slurm_cluster)
    setup = f"from oracles.gpaw import GpawOracle\no = GpawOracle(**{ {**settings, 'workdir': str(workdir)}!r})\n"
    before = len(slurm_cluster.submitted_job_ids())
    (h,) = submit_then_sigkill(setup, [DESIGN], tmp_path / "handles.json")
    started = {p.parent.name: json.loads(p.read_text()) for p in workdir.glob("*/job.json")}
    assert len(started) == 2, "the unstrained reference and the design, both at the scheduler"
    assert all(m["executor"] == "slurm" and m["native_id"] for m in started.values())

    fresh = GpawOracle(**settings)  # a new process would build exactly this
    assert wait_terminal(fresh.poll, [h], limit=600) == [JobStatus.COMPLETED]
    (r,) = fresh.results([h])
    assert r.values is not None and 0.5 < r.values["gap_raw"] < 2.5, r.values
    assert r.values["energy"] < 0 and abs(r.values["strain_energy"]) < 0.2, "near the unstrained cell"
    assert r.provenance["native_id"] == started[h.job_id]["native_id"], "the result names its scheduler job"
    natives = sorted(str(m["native_id"]) for m in started.values())
    assert sorted(slurm_cluster.submitted_job_ids()[before:]) == natives, "one sbatch per job, none after the kill"
    deadline = time.time() + 60  # the job wrote its output; the scheduler records its end a moment later
    while not set(natives) <= set(slurm_cluster.finished_jobs()) and time.time() < deadline:
        time.sleep(0.5)
    finished = slurm_cluster.finished_jobs()
    assert all(finished.get(n) == "COMPLETED" for n in natives), finished


@pytest.mark.slow
def test_a_job_the_scheduler_refuses_fails_as_infrastructure(tmp_path: Path, slurm_cluster: LocalSlurm) -> None:
    settings = _settings(tmp_path / "jobs", slurm_cluster) | {"queue": "no-such-partition"}
    o = GpawOracle(**settings, strain_reference=False)
    (h,) = o.submit([DESIGN])  # submit only queues: the refusal is the job's outcome
    (r,) = o.results([h])
    assert (r.status, r.error_class) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE)
    assert "could not be started" in (r.message or "") and "slurm scheduler refused" in (r.message or "")


def test_an_unknown_executor_is_refused_when_the_oracle_is_built(tmp_path: Path) -> None:
    with pytest.raises(OracleError, match="gpaw oracle: unknown psij executor 'no-such'"):
        GpawOracle(workdir=tmp_path, executor="no-such")


QUICK = (
    "import json, sys, time\n"
    "d = json.load(open(sys.argv[1]))['design']\n"
    "time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0)\n"
    "json.dump({'gap_eV': d['a'] - 2.0, 'converged': True, 'error': None}, open(sys.argv[2], 'w'))\n"
)


@pytest.mark.slow
def test_a_per_user_submit_limit_at_slurm_is_waited_out(
    tmp_path: Path, slurm_cluster: LocalSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLURM's own QOS limit (MaxSubmitJobsPerUser = 1): sbatch answers
    QOSMaxSubmitJobPerUserLimit, the jobs wait in the folder queue and go one by one."""
    script = tmp_path / "quick.py"
    script.write_text(QUICK)
    settings = _settings(tmp_path / "jobs", slurm_cluster) | {"max_parallel": 3, "memory_gb": 0.2}
    o = GpawOracle(**settings, command=[sys.executable, str(script)], strain_reference=False, calibration=None)
    before = len(slurm_cluster.submitted_job_ids())
    monkeypatch.setattr("oracles.scheduler.HOLD_S", 600.0)  # no second try while the first look is checked
    slurm_cluster.limit_submissions(1)
    try:
        handles = o.submit([DESIGN, DESIGN | {"efield": 0.1}, DESIGN | {"efield": 0.2}])
        first, *waiting = o.results(handles)
        assert first.status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED)
        assert all("QOSMaxSubmitJobPerUserLimit" in (r.message or "") for r in waiting), [r.message for r in waiting]
        assert len(slurm_cluster.submitted_job_ids()) - before == 1
        monkeypatch.setattr("oracles.scheduler.HOLD_S", 1.0)
        o.hold.until = 0.0
        statuses = wait_terminal(o.poll, handles, limit=240)
    finally:
        slurm_cluster.limit_submissions(None)
    assert statuses == [JobStatus.COMPLETED] * 3, [r.message for r in o.results(handles)]
    assert len(slurm_cluster.submitted_job_ids()) - before == 3, "one accepted sbatch per design"


class _Limited(LocalRunner):
    """A local runner behind a site that accepts ``room`` submissions, then refuses for now."""

    def __init__(self, room: int) -> None:
        super().__init__(walltime_s=60, memory_gb=1)
        self.room, self.refused = room, 0

    def start(self, folder: Path, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
        if self.room <= 0:
            self.refused += 1
            raise SiteLimit("gpaw oracle: the slurm scheduler refused the job (QOSMaxSubmitJobPerUserLimit)")
        self.room -= 1
        return super().start(folder, argv, env)


def test_a_site_limit_keeps_the_job_queued_until_the_site_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("oracles.scheduler.HOLD_S", 600.0)  # the first look: no second try yet
    script = tmp_path / "quick.py"
    script.write_text(QUICK)
    o = GpawOracle(
        workdir=tmp_path / "jobs",
        command=[sys.executable, str(script)],
        max_parallel=4,
        strain_reference=False,
        calibration=None,
    )
    o.runner = runner = _Limited(room=1)
    handles = o.submit([DESIGN, DESIGN | {"efield": 0.1}, DESIGN | {"efield": 0.2}])
    assert runner.refused == 1, "the first refusal stops this round: the rest wait their turn"
    waiting = o.results(handles)[1:]
    assert all(r.status is JobStatus.PENDING and "QOSMaxSubmitJobPerUserLimit" in (r.message or "") for r in waiting)
    runner.room = 5  # the user's other jobs ended
    monkeypatch.setattr("oracles.scheduler.HOLD_S", 0.2)
    o.hold.until = 0.0
    assert wait_terminal(o.poll, handles, limit=30) == [JobStatus.COMPLETED] * 3
    assert [r.values["gap"] for r in o.results(handles) if r.values] == pytest.approx([1.19] * 3)


@pytest.mark.parametrize(
    "message",
    [
        "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: Job violates "
        "accounting/QOS policy (job submit limit, user's size and/or time limits)",
        "sbatch: error: AssocMaxSubmitJobLimit",
        "qsub: would exceed complex's per-user limit of jobs in 'Q' state",
    ],
)
def test_site_limit_refusals_are_told_from_other_refusals(tmp_path: Path, message: str) -> None:
    import psij

    site = Scheduler("gpaw", tmp_path, executor="local")

    class Refusing:
        def submit(self, job: Any) -> None:
            raise psij.SubmitException(message)

    site._executor = Refusing()
    with pytest.raises(SiteLimit):
        site.submit("j1", tmp_path, ["true"], stdout=tmp_path / "o", stderr=tmp_path / "e")
    message_down = "sbatch: error: Batch job submission failed: Unable to contact slurm controller"

    class Down:
        def submit(self, job: Any) -> None:
            raise psij.SubmitException(message_down)

    site._executor = Down()
    with pytest.raises(OracleError) as refused:
        site.submit("j2", tmp_path, ["true"], stdout=tmp_path / "o", stderr=tmp_path / "e")
    assert not isinstance(refused.value, SiteLimit)


def test_a_job_that_ended_well_waits_a_while_for_its_output_to_appear(tmp_path: Path) -> None:
    # a shared file system shows a compute node's output.json on this machine late: one look must not fail it
    runner = BatchRunner(Scheduler("gpaw", tmp_path, executor="slurm"), memory_gb=1.0)
    folder = tmp_path / "job"
    folder.mkdir()

    def verdict(state: str, code: int | None, ago: float) -> JobStatus:
        record = {"state": state, "exit_code": code, "message": "", "at": time.time() - ago}
        (folder / VERDICT).write_text(json.dumps(record))
        return runner.watch(folder, {"native_id": "7"}).status

    assert verdict("COMPLETED", 0, ago=1.0) is JobStatus.RUNNING
    assert verdict("COMPLETED", 0, ago=OUTPUT_GRACE_S + 1) is JobStatus.FAILED, "not for ever"
    assert verdict("COMPLETED", 1, ago=1.0) is JobStatus.FAILED, "a job that failed has nothing to wait for"
    assert verdict("FAILED", None, ago=1.0) is JobStatus.FAILED
