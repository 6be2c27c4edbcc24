"""The VASP back end: inputs, parsing of real vasprun.xml files, and jobs through a real SLURM.

The scheduler tests (``slow``) submit through psij to the local SLURM of the
``slurm_cluster`` fixture, with `oracles.testing.fake_vasp` as the VASP command; the fake
writes ASE's real vasprun.xml (diamond, PBE gap 5.5504 eV on its mesh), so the value the
oracle reports is parsed from a file VASP wrote. Submissions are counted at the
scheduler (slurmctld's log of accepted ``sbatch`` calls) and at the "VASP" (the fake's
invocation log), not only by our own folders.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import SETTINGS
from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

from agent.core.materials import get_material
from oracles import make_oracle
from oracles.base import ErrorClass, Handle, JobStatus, OracleError
from oracles.testing.fake_vasp import real_vasprun_path, unconverged_vasprun
from oracles.testing.slurm import LocalSlurm
from oracles.vasp import VaspOracle
from oracles.vasp_inputs import dipole_centre, parse_vasprun, write_inputs
from tests.oracles.helpers import submit_then_sigkill, wait_terminal

FAKE = [sys.executable, "-m", "oracles.testing.fake_vasp"]
REAL_GAP = 5.5504  # eV: eigenvalue gap of ASE's vasprun_pstress.xml (VASP 6.3.0)
MOS2 = get_material("mos2")
DESIGN = {"a": 3.2, "b": 3.1, "c": 12.5, "alpha": 90.0, "beta": 88.0, "gamma": 121.0, "efield": -0.3}


def _row(efield: float = 0.0, a: float = 3.16) -> list[float]:
    return [a, 3.16, 12.3, 90.0, 90.0, 120.0, efield]


# -- inputs -----------------------------------------------------------------------------
def test_inputs_carry_the_papers_settings_and_the_design(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SETTINGS, "PMG_VASP_PSP_DIR", None)
    write_inputs(tmp_path, DESIGN, MOS2)
    incar = Incar.from_file(tmp_path / "INCAR")
    expected = {"ENCUT": 500, "ISPIN": 2, "LDIPOL": True, "IDIPOL": 3, "EFIELD": -0.3, "NSW": 0}
    assert {k: incar[k] for k in expected} == expected
    assert incar["DIPOL"] == pytest.approx([0.5, 0.5, 0.5]), "dipole centred on the Mo plane"
    kpts = Kpoints.from_file(tmp_path / "KPOINTS")
    assert kpts.style == Kpoints.supported_modes.Monkhorst and tuple(kpts.kpts[0]) == (9, 9, 1)
    structure = Poscar.from_file(tmp_path / "POSCAR").structure
    lat = structure.lattice
    assert np.allclose([*lat.abc, *lat.angles], [DESIGN[k] for k in ("a", "b", "c", "alpha", "beta", "gamma")])
    assert sorted(s.symbol for s in structure.species) == ["Mo", "S", "S"]
    assert (tmp_path / "POTCAR.spec").read_text().split() == ["Mo_pv", "S"]
    assert not (tmp_path / "POTCAR").exists(), "no POTCAR library: a spec, not a failure"


def test_dipole_centre_follows_a_layer_across_the_cell_boundary() -> None:
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.hexagonal(3.16, 12.3), ["Mo", "S", "S"], [[0, 0, 0.0], [0, 0, 0.1], [0, 0, 0.9]])
    assert dipole_centre(s, 2) == pytest.approx([0.5, 0.5, 0.0])


# -- parsing real vasprun.xml files -------------------------------------------------------
def test_real_converged_vasprun_gives_its_gap() -> None:
    run = parse_vasprun(real_vasprun_path())
    assert run.converged and run.gap_eV == pytest.approx(REAL_GAP)
    assert run.provenance["vasp_version"] == "6.3.0" and run.provenance["electronic_steps"] == 9


def test_truncated_and_missing_vasprun_are_infrastructure(tmp_path: Path) -> None:
    text = real_vasprun_path().read_text(encoding="iso-8859-1")
    (tmp_path / "vasprun.xml").write_text(text[: len(text) // 2], encoding="iso-8859-1")
    cut = parse_vasprun(tmp_path / "vasprun.xml")
    assert (cut.converged, cut.error_class) == (False, ErrorClass.INFRASTRUCTURE)
    assert "truncated" in (cut.message or "")
    gone = parse_vasprun(tmp_path / "nothing" / "vasprun.xml")
    assert gone.error_class is ErrorClass.INFRASTRUCTURE and "missing" in (gone.message or "")


def test_non_converged_vasprun_is_physics(tmp_path: Path) -> None:
    text = unconverged_vasprun(real_vasprun_path().read_text(encoding="iso-8859-1"), keep=3)
    assert text.count("<scstep>") == 3 and re.search(r'name="NELM">\s*3<', text)
    (tmp_path / "vasprun.xml").write_text(text, encoding="iso-8859-1")
    run = parse_vasprun(tmp_path / "vasprun.xml")
    assert (run.converged, run.gap_eV, run.error_class) == (False, None, ErrorClass.PHYSICS)
    assert "NELM = 3" in (run.message or "")


# -- settings -----------------------------------------------------------------------------
def test_missing_command_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INNLOOP_VASP_COMMAND", raising=False)
    with pytest.raises(OracleError, match=r"command=.*INNLOOP_VASP_COMMAND"):
        VaspOracle(workdir=tmp_path)
    monkeypatch.setenv("INNLOOP_VASP_COMMAND", "vasp_std --flag")
    monkeypatch.setenv("INNLOOP_VASP_QUEUE", "short")
    o = make_oracle("vasp", workdir=tmp_path)
    assert isinstance(o, VaspOracle) and o.command == ["vasp_std", "--flag"] and o.site.queue == "short"


def test_unknown_executor_and_lost_jobs(tmp_path: Path) -> None:
    o = VaspOracle(workdir=tmp_path, command=FAKE, executor="no-such-scheduler")
    with pytest.raises(OracleError, match="unknown psij executor 'no-such-scheduler'"):
        o.submit([_row()])
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
    lost = Handle("vasp", "x1", dict(DESIGN), native_id="17", workdir=str(tmp_path / "gone"))
    (r,) = o.results([lost])
    assert (r.status, r.error_class) == (JobStatus.ABANDONED, ErrorClass.INFRASTRUCTURE)


def test_psij_local_executor_end_to_end(tmp_path: Path) -> None:
    """The same path without a scheduler (psij's ``local`` executor runs the job as a process)."""
    o = VaspOracle(workdir=tmp_path, command=FAKE, executor="local", poll_interval_s=1)
    (h,) = o.submit([_row()])
    assert wait_terminal(o.poll, [h], limit=60) == [JobStatus.COMPLETED]
    (r,) = o.results([h])
    assert r.values == {"gap": pytest.approx(REAL_GAP)} and r.provenance["exit_code"] == 0


def test_unreachable_scheduler_is_no_verdict(tmp_path: Path) -> None:
    """psij fails every watched job when ``squeue`` keeps failing; that says nothing about the job."""
    import psij

    o = VaspOracle(workdir=tmp_path, command=FAKE)
    folder = tmp_path / "j1"
    folder.mkdir()
    h = Handle("vasp", "j1", dict(DESIGN), native_id="17", workdir=str(folder))
    job = psij.Job()
    job.status = psij.JobStatus(psij.JobState.ACTIVE)
    o.site.jobs["j1"] = job
    assert o.poll([h]) == [JobStatus.RUNNING]
    job.status = psij.JobStatus(psij.JobState.FAILED, message="Failed to poll for job status: squeue: ...")
    assert o.poll([h]) == [JobStatus.RUNNING], "the last known status stands"
    assert "j1" not in o.site.jobs and not (folder / "scheduler.json").exists(), "re-attached next time, no verdict"


def _job_folder(root: Path, name: str, design: dict[str, float] | None, at: float, native: str | None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    write_inputs(folder, design or DESIGN, MOS2)
    if design is not None:
        meta = {"native_id": native, "design": design, "submitted_at": at}
        (folder / "job.json").write_text(json.dumps(meta))
    return folder


def test_adopt_finds_the_newest_job_of_each_design_since(tmp_path: Path) -> None:
    """What a campaign killed between submit and saving its handles re-attaches to."""
    other = dict(DESIGN, efield=0.1)
    _job_folder(tmp_path, "old", DESIGN, at=100.0, native="11")
    _job_folder(tmp_path, "new", DESIGN, at=200.0, native="12")
    _job_folder(tmp_path, "older", DESIGN, at=150.0, native="13")
    _job_folder(tmp_path, "before", other, at=50.0, native="14")  # submitted before `since`
    _job_folder(tmp_path, "no-id", other, at=300.0, native=None)  # never reached the scheduler
    _job_folder(tmp_path, "no-meta", None, at=300.0, native=None)  # inputs only: sbatch's answer lost
    o = VaspOracle(workdir=tmp_path, command=FAKE)
    new, unknown = o.adopt([DESIGN, other], since=120.0)
    assert unknown is None, "no job.json with a native id: not adopted, nothing invented"
    assert new is not None and (new.job_id, new.native_id, new.submitted_at) == ("new", "12", 200.0)
    assert new.workdir == str(tmp_path / "new") and new.design == DESIGN
    twice = o.adopt([DESIGN, DESIGN, DESIGN], since=120.0)
    assert [h.native_id if h else None for h in twice] == ["12", "13", None], "one job per design, newest first"


# -- through a real SLURM -----------------------------------------------------------------
def _oracle(workdir: Path, cluster: LocalSlurm, walltime_s: float = 300) -> VaspOracle:
    return VaspOracle(
        workdir=workdir,
        command=FAKE,
        executor="slurm",
        queue=cluster.partition,
        walltime_s=walltime_s,
        poll_interval_s=1,
    )


def _fake_runs(log: Path) -> list[str]:
    """Job folders in which the fake VASP started, one per start."""
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.slow
def test_batch_through_slurm_classifies_every_outcome(
    tmp_path: Path, slurm_cluster: LocalSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VASP_LOG", str(tmp_path / "fake.log"))
    o = _oracle(tmp_path / "jobs", slurm_cluster)
    before = len(slurm_cluster.submitted_job_ids())
    ok = o.submit([_row(0.0), _row(0.2, a=3.2)])
    others = []
    for mode in ("unconverged", "truncate", "crash"):  # psij exports the submitting environment
        monkeypatch.setenv("FAKE_VASP_MODE", mode)
        others += o.submit([_row(0.1)])
    handles = ok + others
    assert all(s in (JobStatus.PENDING, JobStatus.RUNNING) for s in o.poll(handles)), "poll returns at once"
    assert wait_terminal(o.poll, handles, limit=90)[:2] == [JobStatus.COMPLETED] * 2
    r_ok, r_ok2, unconverged, truncated, crashed = o.results(handles)
    assert r_ok.values == r_ok2.values == {"gap": pytest.approx(REAL_GAP)}
    assert r_ok.provenance["vasp_version"] == "6.3.0" and r_ok.provenance["native_id"] == ok[0].native_id
    assert r_ok.provenance["incar"]["ENCUT"] == 500 and 0 <= r_ok.provenance["wall_s"] < 60
    assert (unconverged.status, unconverged.error_class) == (JobStatus.FAILED, ErrorClass.PHYSICS)
    assert (truncated.status, truncated.error_class) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE)
    assert "truncated" in (truncated.message or "")
    assert (crashed.status, crashed.error_class) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE)
    assert "exit code 1" in (crashed.message or "")
    native = [h.native_id for h in handles]
    assert slurm_cluster.submitted_job_ids()[before:] == native, "one sbatch per design, no more"
    assert sorted(_fake_runs(tmp_path / "fake.log")) == sorted(str(h.workdir) for h in handles)


@pytest.mark.slow
def test_killed_submitter_is_reattached_without_resubmitting(
    tmp_path: Path, slurm_cluster: LocalSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VASP_LOG", str(tmp_path / "fake.log"))
    workdir = tmp_path / "jobs"
    setup = (
        "from oracles.vasp import VaspOracle\n"
        f"o = VaspOracle(workdir={str(workdir)!r}, command={FAKE!r}, queue={slurm_cluster.partition!r}, "
        "walltime_s=300, poll_interval_s=1)\n"
    )
    before = len(slurm_cluster.submitted_job_ids())
    handles = submit_then_sigkill(setup, [_row(0.0), _row(0.3, a=3.3)], tmp_path / "handles.json")
    fresh = _oracle(workdir, slurm_cluster)  # a new process would build exactly this
    assert wait_terminal(fresh.poll, handles, limit=60) == [JobStatus.COMPLETED] * 2
    assert [r.values for r in fresh.results(handles)] == [{"gap": pytest.approx(REAL_GAP)}] * 2
    assert slurm_cluster.submitted_job_ids()[before:] == [h.native_id for h in handles], "no second submission"
    assert fresh.adopt([_row(0.0), _row(0.3, a=3.3)], since=handles[0].submitted_at - 60) == handles
    assert sorted(_fake_runs(tmp_path / "fake.log")) == sorted(str(h.workdir) for h in handles), "VASP ran once per job"
    assert len([p for p in workdir.iterdir() if not p.name.startswith(".")]) == 2


@pytest.mark.slow
def test_cancel_through_the_scheduler(
    tmp_path: Path, slurm_cluster: LocalSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VASP_MODE", "sleep")
    o = _oracle(tmp_path / "jobs", slurm_cluster)
    (h,) = o.submit([_row()])
    o.cancel([h])
    assert wait_terminal(o.poll, [h], limit=30) == [JobStatus.CANCELLED]
    deadline = time.time() + 20
    while h.native_id not in slurm_cluster.finished_jobs() and time.time() < deadline:
        time.sleep(0.5)
    assert slurm_cluster.finished_jobs()[str(h.native_id)] == "CANCELLED"


@pytest.mark.slow
def test_walltime_kill_is_timeout_not_success(
    tmp_path: Path, slurm_cluster: LocalSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLURM's shortest limit is one minute and it checks limits every 30 s: ~60-90 s."""
    monkeypatch.setenv("FAKE_VASP_MODE", "sleep")
    monkeypatch.setenv("FAKE_VASP_SLEEP_S", "300")
    o = _oracle(tmp_path / "jobs", slurm_cluster, walltime_s=60)
    (h,) = o.submit([_row()])
    assert wait_terminal(o.poll, [h], limit=150) == [JobStatus.TIMEOUT]
    (r,) = o.results([h])
    assert r.error_class is ErrorClass.INFRASTRUCTURE and r.values is None and "wall time" in (r.message or "")
    assert slurm_cluster.finished_jobs()[str(h.native_id)] == "TIMEOUT", "the scheduler agrees"
    assert _oracle(tmp_path / "jobs", slurm_cluster).poll([h]) == [JobStatus.TIMEOUT], "and it stays a timeout"


@pytest.mark.slow
def test_scheduler_down_at_submit_is_one_clear_error(
    tmp_path: Path, slurm_cluster: LocalSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config whose controller port has no slurmctld behind it: sbatch really fails to connect."""
    dead = tmp_path / "slurm.conf"
    text = slurm_cluster.conf.read_text()
    dead.write_text(re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={_unused_port()}", text))
    monkeypatch.setenv("SLURM_CONF", str(dead))
    o = _oracle(tmp_path / "jobs", slurm_cluster)
    before = len(slurm_cluster.submitted_job_ids())
    with pytest.raises(OracleError, match=r"slurm scheduler refused .*nothing of this batch of 2 was submitted"):
        o.submit([_row(), _row(0.1)])
    assert [p for p in (tmp_path / "jobs").iterdir() if not p.name.startswith(".")] == []
    assert len(slurm_cluster.submitted_job_ids()) == before


def _unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_per_user_submit_limit_holds_jobs_until_the_site_takes_them(
    tmp_path: Path, slurm_cluster: LocalSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLURM's own QOS limit (MaxSubmitJobsPerUser = 1): the accepted job stays, the rest of
    the batch is held, never failed; a fresh process (a restarted campaign) submits them."""
    monkeypatch.setenv("FAKE_VASP_LOG", str(tmp_path / "fake.log"))
    workdir = tmp_path / "jobs"
    o = _oracle(workdir, slurm_cluster)
    rows = [_row(0.0), _row(0.1), _row(0.2)]
    before = len(slurm_cluster.submitted_job_ids())
    monkeypatch.setattr("oracles.scheduler.HOLD_S", 600.0)  # no second try while the first look is checked
    slurm_cluster.limit_submissions(1)
    try:
        handles = o.submit(rows)
        assert [bool(h.native_id) for h in handles] == [True, False, False]
        held = o.results(handles)[1:]
        assert all(r.status is JobStatus.PENDING and "QOSMaxSubmitJobPerUserLimit" in (r.message or "") for r in held)
        assert o.adopt(rows, since=handles[0].submitted_at - 1) == handles, "held jobs are adopted, not sent again"
        monkeypatch.setattr("oracles.scheduler.HOLD_S", 1.0)
        fresh = _oracle(workdir, slurm_cluster)  # a restarted campaign polls with the handles it saved
        statuses = wait_terminal(fresh.poll, handles, limit=240)
    finally:
        slurm_cluster.limit_submissions(None)
    assert statuses == [JobStatus.COMPLETED] * 3, [r.message for r in fresh.results(handles)]
    accepted = slurm_cluster.submitted_job_ids()[before:]
    assert len(accepted) == 3 and [r.provenance["native_id"] for r in fresh.results(handles)] == accepted
    assert sorted(_fake_runs(tmp_path / "fake.log")) == sorted(str(h.workdir) for h in handles), "VASP ran once per job"


@pytest.mark.slow
def test_a_held_job_can_be_cancelled_and_is_never_submitted(
    tmp_path: Path, slurm_cluster: LocalSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VASP_LOG", str(tmp_path / "fake.log"))
    o = _oracle(tmp_path / "jobs", slurm_cluster)
    before = len(slurm_cluster.submitted_job_ids())
    slurm_cluster.limit_submissions(1)
    try:
        first, second = o.submit([_row(0.0), _row(0.1)])
        o.cancel([second])
        assert wait_terminal(o.poll, [first, second], limit=120) == [JobStatus.COMPLETED, JobStatus.CANCELLED]
    finally:
        slurm_cluster.limit_submissions(None)
    assert slurm_cluster.submitted_job_ids()[before:] == [first.native_id], "the cancelled held job never went"


def test_a_held_job_refused_for_good_fails_and_holds_nothing_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a site limit holds: when a held job is then refused for another reason (its queue
    gone), it fails as infrastructure, and the next batch is submitted, not held."""
    from oracles.scheduler import SiteLimit

    o = VaspOracle(workdir=tmp_path, command=FAKE, executor="local", poll_interval_s=1)
    answers: list[Exception | str] = ["101", SiteLimit("slurm: QOSMaxSubmitJobPerUserLimit"), OracleError("no queue")]
    answers += ["102"]

    def submit(job_id: str, *args: object, **kwargs: object) -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(o.site, "submit", submit)
    monkeypatch.setattr("oracles.scheduler.HOLD_S", 0.0)
    accepted, held = o.submit([_row(0.0), _row(0.1)])
    assert accepted.native_id == "101" and held.native_id is None
    (r,) = o.results([held])  # asked again: refused for good this time
    assert (r.status, r.error_class) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE)
    assert "held, then refused" in (r.message or "") and "no queue" in (r.message or "")
    (later,) = o.submit([_row(0.2)])
    assert later.native_id == "102" and not answers, "the next batch is not held behind it"
