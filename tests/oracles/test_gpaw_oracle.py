"""The GPAW back end's job machinery, with a stand-in executable in place of GPAW.

The stand-in reads the same input.json and writes the same output.json as
`oracles.gpaw_job`; its behaviour is picked by the design's field value.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from oracles import make_oracle
from oracles.base import ErrorClass, JobStatus, OracleError
from oracles.gpaw import GpawOracle
from oracles.job_runners import LocalRunner
from tests.oracles.helpers import submit_then_sigkill, wait_terminal

STAND_IN = textwrap.dedent("""
    import json, sys, time
    inp, out = sys.argv[1], sys.argv[2]
    d = json.load(open(inp))["design"]
    e = d["efield"]
    if e > 0.85:   # hangs
        time.sleep(120)
    if e < -0.85:  # dies without output
        sys.exit(3)
    if abs(e - 0.5) < 1e-9:  # eats memory
        blob = bytearray(3 * 2**30)
    time.sleep(0.3)
    if abs(e - 0.25) < 1e-9:
        res = {"gap_eV": None, "converged": False, "error": {"class": "physics", "message": "SCF not converged"}}
    else:
        res = {"gap_eV": d["a"] - 2.0, "converged": True, "error": None, "gpaw_version": "stand-in"}
    open(out + ".tmp", "w").write(json.dumps(res))
    import os; os.replace(out + ".tmp", out)
""")


def _design(efield: float) -> list[float]:
    return [3.16, 3.16, 12.3, 90.0, 90.0, 120.0, efield]


@pytest.fixture
def oracle(tmp_path: Path) -> GpawOracle:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    return GpawOracle(
        workdir=tmp_path / "jobs",
        command=[sys.executable, str(script)],
        walltime_s=5,
        memory_gb=1,
        strain_reference=False,  # the queue's own behaviour; the reference job has its test
    )


def test_every_outcome_is_classified(oracle: GpawOracle) -> None:
    handles = oracle.submit([_design(0.0), _design(0.25), _design(-0.9), _design(0.5)])
    assert oracle.poll(handles[:1]) == [JobStatus.RUNNING]
    wait_terminal(oracle.poll, handles)
    ok, physics, died, memory = oracle.results(handles)
    shift = oracle.calibration.shift if oracle.calibration else 0.0
    assert ok.status is JobStatus.COMPLETED
    assert ok.values == {"gap": pytest.approx(1.16 + shift), "gap_raw": pytest.approx(1.16)}
    assert ok.provenance["calibration"]["shift"] == pytest.approx(shift) and shift < -0.3
    assert ok.provenance["gpaw_version"] == "stand-in"
    assert (physics.status, physics.error_class) == (JobStatus.FAILED, ErrorClass.PHYSICS)
    assert (died.status, died.error_class) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE)
    assert "without writing output.json" in (died.message or "")
    assert (memory.status, memory.error_class) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE), "memory limit held"
    assert all(Path(h.workdir or "", "input.json").exists() for h in handles)


def test_walltime_kill_is_timeout_not_success(tmp_path: Path, oracle: GpawOracle) -> None:
    oracle.runner = LocalRunner(walltime_s=0.5, memory_gb=1)  # the wall time the jobs started from here get
    (h,) = oracle.submit([_design(0.9)])
    time.sleep(0.8)
    (r,) = oracle.results([h])
    assert r.status is JobStatus.TIMEOUT and r.error_class is ErrorClass.INFRASTRUCTURE
    time.sleep(0.2)
    assert oracle.poll([h]) == [JobStatus.TIMEOUT], "the job stays timed out and its process is gone"


def test_cancel(oracle: GpawOracle) -> None:
    (h,) = oracle.submit([_design(0.9)])
    oracle.cancel([h])
    assert oracle.poll([h]) == [JobStatus.CANCELLED]


def test_killed_submitter_is_reattached(tmp_path: Path, oracle: GpawOracle) -> None:
    setup = (
        "from oracles.gpaw import GpawOracle\n"
        f"o = GpawOracle(workdir={str(oracle.workdir)!r}, command={oracle.command!r}, walltime_s=30,"
        " strain_reference=False)\n"
    )
    designs = [[3.16, 3.16, 12.3, 90, 90, 120, 0.0], [3.3, 3.0, 12.0, 90, 90, 120, 0.1]]
    handles = submit_then_sigkill(setup, designs, tmp_path / "handles.json")
    assert wait_terminal(oracle.poll, handles) == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    assert len(list(oracle.workdir.iterdir())) == 2, "nothing was submitted again"
    assert [r.values["gap_raw"] for r in oracle.results(handles) if r.values] == pytest.approx([1.16, 1.3])


def test_registry_and_bad_settings(tmp_path: Path) -> None:
    assert isinstance(make_oracle("gpaw", workdir=tmp_path), GpawOracle)
    with pytest.raises(Exception, match="must be positive"):
        GpawOracle(workdir=tmp_path, walltime_s=-1)


def test_calibration_choices(tmp_path: Path) -> None:
    raw = GpawOracle(workdir=tmp_path, calibration=None)
    assert raw.calibration is None
    custom = tmp_path / "cal.json"
    custom.write_text('{"slope": 1.0, "shift": -0.2}')
    assert GpawOracle(workdir=tmp_path, calibration=str(custom)).calibration.shift == -0.2  # type: ignore[union-attr]
    custom.write_text('{"slope": 1.0, "shift": -0.2, "colour": 1}')
    with pytest.raises(OracleError, match=r"unknown fields \['colour'\]"):
        GpawOracle(workdir=tmp_path, calibration=str(custom))
    with pytest.raises(OracleError, match="neither a bundled one"):
        GpawOracle(workdir=tmp_path, calibration="no-such-calibration")


def test_local_queue_runs_at_most_max_parallel(oracle: GpawOracle) -> None:
    handles = oracle.submit([_design(0.9), _design(0.0), _design(0.1)])
    assert oracle.poll(handles) == [JobStatus.RUNNING, JobStatus.PENDING, JobStatus.PENDING]
    oracle.cancel(handles[1:2])  # a queued job that is cancelled never starts
    oracle.cancel(handles[:1])  # frees the slot: the next queued job starts on the next poll
    assert oracle.poll(handles) == [JobStatus.CANCELLED, JobStatus.CANCELLED, JobStatus.RUNNING]
    assert not Path(handles[1].workdir or "", "job.json").exists()
    assert wait_terminal(oracle.poll, handles)[2] is JobStatus.COMPLETED
    two = GpawOracle(workdir=oracle.workdir, command=oracle.command, max_parallel=2, strain_reference=False)
    hung = two.submit([_design(0.9), _design(0.9)])
    assert two.poll(hung) == [JobStatus.RUNNING] * 2
    two.cancel(hung)


def test_the_jobs_the_caller_polls_start_first_in_its_order(oracle: GpawOracle) -> None:
    """A job queued again (its process lost) must not wait behind every job queued after it:
    a poll starts the polled handles' queued jobs first, in the caller's order."""
    a, b, c = oracle.submit([_design(0.9), _design(0.0), _design(0.1)])
    assert oracle.poll([a]) == [JobStatus.RUNNING]
    oracle.cancel([a])
    assert oracle.poll([c, b]) == [JobStatus.RUNNING, JobStatus.PENDING], "c first: the caller asked for it first"
    assert wait_terminal(oracle.poll, [c, b]) == [JobStatus.COMPLETED, JobStatus.COMPLETED]


def test_a_launcher_that_died_mid_start_is_reported(oracle: GpawOracle) -> None:
    (h,) = oracle.submit([_design(0.0)])
    wait_terminal(oracle.poll, [h])
    folder = Path(h.workdir or "")
    for name in ("output.json", "job.json"):
        (folder / name).unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / "launch.lock").write_text(f"{socket.gethostname()} {int(dead.stdout)}")  # its launcher is gone
    os.utime(folder / "launch.lock", (0, 0))
    (r,) = oracle.results([h])
    assert (r.status, r.error_class) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE)
    assert "died before recording it" in (r.message or "")


def test_a_job_that_cannot_start_fails_on_poll_not_in_submit(tmp_path: Path) -> None:
    """Submit only queues: a launch failure is the job's outcome (retryable), never a raise
    from submit with folders left behind."""
    o = GpawOracle(workdir=tmp_path / "jobs", command=[str(tmp_path / "no-such-gpaw")], walltime_s=5)
    (h,) = o.submit([_design(0.0)])
    (r,) = o.results([h])
    assert (r.status, r.error_class) == (JobStatus.FAILED, ErrorClass.INFRASTRUCTURE)
    assert "could not be started" in (r.message or "")


def test_adopt_finds_the_jobs_of_a_lost_submit(oracle: GpawOracle) -> None:
    since = time.time()
    handles = oracle.submit([_design(0.9), _design(0.0)])
    found = oracle.adopt([_design(0.0), _design(0.9), _design(0.1)], since)
    assert [h.job_id if h else None for h in found] == [handles[1].job_id, handles[0].job_id, None]
    assert [h.workdir for h in found if h] == [handles[1].workdir, handles[0].workdir]
    assert oracle.adopt([_design(0.0)], time.time() + 1) == [None], "only jobs submitted since"
    oracle.cancel(handles)


ENERGY_STAND_IN = textwrap.dedent("""
    import json, sys, time
    inp, out = sys.argv[1], sys.argv[2]
    d = json.load(open(inp))["design"]
    time.sleep(0.2)
    res = {"gap_eV": 1.0, "converged": True, "error": None, "gpaw_version": "stand-in",
           "energy_eV": -20.0 + 10.0 * (d["a"] - 3.16) ** 2 + d["efield"], "formula_units": 1}
    open(out + ".tmp", "w").write(json.dumps(res))
    import os; os.replace(out + ".tmp", out)
""")


def test_strain_energy_is_measured_from_one_unstrained_reference_job(tmp_path: Path) -> None:
    script = tmp_path / "stand_in.py"
    script.write_text(ENERGY_STAND_IN)
    oracle = GpawOracle(workdir=tmp_path / "jobs", command=[sys.executable, str(script)], walltime_s=30, memory_gb=1)
    strained = [3.36, 3.16, 12.3, 90.0, 90.0, 120.0, 0.0]
    handles = oracle.submit([strained, _design(0.5)])
    reference = oracle.reference_folder()
    assert reference is not None and (reference / "input.json").exists()
    assert oracle.poll(handles) == [JobStatus.PENDING, JobStatus.PENDING]  # the reference runs first
    wait_terminal(oracle.poll, handles)
    first, second = oracle.results(handles)
    assert first.values is not None and second.values is not None
    assert first.values["energy"] == pytest.approx(-20.0 + 10.0 * 0.2**2)
    assert first.values["strain_energy"] == pytest.approx(0.4)
    assert second.values["strain_energy"] == pytest.approx(0.5)  # the field's work counts too
    assert first.provenance["reference_energy_eV_per_fu"] == pytest.approx(-20.0)
    # A second submit in the same work folder reuses the reference: one job, never paid twice.
    (third,) = oracle.submit([_design(0.0)])
    wait_terminal(oracle.poll, [third])
    assert len(list(oracle.workdir.glob("0-reference-*"))) == 1
    assert oracle.results([third])[0].values["strain_energy"] == pytest.approx(0.0)  # type: ignore[index]


def test_a_reference_that_gave_no_energy_keeps_the_gap_and_says_why(tmp_path: Path) -> None:
    script = tmp_path / "stand_in.py"
    script.write_text(ENERGY_STAND_IN)
    oracle = GpawOracle(workdir=tmp_path / "jobs", command=[sys.executable, str(script)], walltime_s=30, memory_gb=1)
    reference = oracle.reference_folder()
    assert reference is not None
    reference.mkdir(parents=True)
    (reference / "input.json").write_text("{}")
    physics = {"gap_eV": None, "converged": False, "error": {"class": "physics", "message": "SCF did not converge"}}
    (reference / "output.json").write_text(json.dumps(physics))
    (h,) = oracle.submit([_design(0.0)])
    wait_terminal(oracle.poll, [h])
    (r,) = oracle.results([h])
    assert r.ok and r.values is not None and "strain_energy" not in r.values and r.values["gap_raw"] == 1.0
    assert "SCF did not converge" in r.provenance["strain_energy"], "an answer about the cell: not retried"
    assert not list(oracle.workdir.glob("*-failed-*"))


def test_a_lost_reference_is_run_again_a_bounded_number_of_times(tmp_path: Path) -> None:
    """The reference's process died without an answer (a reboot): results wait for a new
    attempt instead of forever, and after the last attempt go on without a strain energy."""
    script = tmp_path / "stand_in.py"
    script.write_text(ENERGY_STAND_IN)
    oracle = GpawOracle(workdir=tmp_path / "jobs", command=[sys.executable, str(script)], walltime_s=30, memory_gb=1)
    reference = oracle.reference_folder()
    assert reference is not None

    def die() -> None:  # a launched reference whose process is gone, without output
        reference.mkdir(parents=True, exist_ok=True)
        (reference / "input.json").write_text(json.dumps({"design": {}, "settings": {}}))
        (reference / "job.json").write_text(json.dumps({"pid": 2**22 + 7, "started": 0, "deadline": 1e12}))

    die()
    (h,) = oracle.submit([_design(0.0)])
    wait_terminal(oracle.poll, [h])
    (r,) = oracle.results([h])
    assert r.values is not None and r.values["strain_energy"] == pytest.approx(0.0), "the second attempt ran"
    assert [p.name for p in oracle.workdir.glob("*-failed-*")] == [f"{reference.name}-failed-1"]

    # A reference that dies every time it is tried: two more attempts, then results go on
    dying = tmp_path / "dying.py"
    dying.write_text(
        "import json, sys\nif json.load(open(sys.argv[1]))['design']['efield'] == 0.0: sys.exit(3)\n" + ENERGY_STAND_IN
    )
    again = GpawOracle(workdir=tmp_path / "other", command=[sys.executable, str(dying)], walltime_s=30, memory_gb=1)
    (h,) = again.submit([_design(0.1)])
    assert wait_terminal(again.poll, [h]) == [JobStatus.COMPLETED]
    (r,) = again.results([h])
    assert r.values is not None and "strain_energy" not in r.values and r.values["energy"] == pytest.approx(-19.9)
    assert "after 3 attempts" in r.provenance["strain_energy"]
    assert len(list(again.workdir.glob("0-reference-*-failed-*"))) == 2


def test_one_reference_per_setting_set_and_none_is_a_design(tmp_path: Path) -> None:
    script = tmp_path / "stand_in.py"
    script.write_text(ENERGY_STAND_IN)
    command = [sys.executable, str(script)]
    implicit = GpawOracle(workdir=tmp_path / "jobs", command=command)
    explicit = GpawOracle(workdir=tmp_path / "jobs", command=command, settings={"ecut_eV": 350, "kpts": [9, 9, 1]})
    cheaper = GpawOracle(workdir=tmp_path / "jobs", command=command, settings={"ecut_eV": 250})
    assert implicit.reference_folder() == explicit.reference_folder() != cheaper.reference_folder()
    assert implicit.value_names() == {"gap", "gap_raw", "energy", "strain_energy"}
    assert GpawOracle(workdir=tmp_path / "x", strain_reference=False).value_names() == {"gap", "gap_raw", "energy"}
    unstrained = [3.16, 3.16, 12.3, 90.0, 90.0, 120.0, 0.0]
    (h,) = implicit.submit([unstrained])
    (found,) = implicit.adopt([unstrained], since=0.0)
    assert found is not None and found.job_id == h.job_id, "the reference has the same design but is not adopted"
