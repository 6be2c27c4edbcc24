"""The SiLA 2 oracle (`oracles.sila2`) against the reference instrument (`oracles.testing.sila_lab`),
a real SiLA 2 server over gRPC on loopback in a process of its own: a campaign through it, a
campaign killed (SIGKILL) while the instrument measures that re-attaches by execution UUID with
no second execution counted at the server, an instrument that is down or restarted, and a
command that fails with the feature's defined execution error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.campaign.store import CampaignStore
from oracles.base import JobStatus, OracleError, design_digest
from oracles.sila2 import PURE, Sila2Oracle
from oracles.testing.lab import free_port
from oracles.testing.sila_lab import executions, start_sila_lab, stop_sila_lab
from tests.agent.campaign.helpers import TINY_MODELS

BASE = {"a": 3.16, "b": 3.16, "c": 12.3, "alpha": 90.0, "beta": 90.0, "gamma": 120.0, "efield": 0.0}
FAIL_ABOVE = 0.9  # the instrument fails designs with efield >= this (MeasurementFailed)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    folder = tmp_path_factory.mktemp("sila-lab")
    proc, port = start_sila_lab(folder, latency_s=0.2, fail_above=FAIL_ABOVE)
    try:
        yield folder, port
    finally:
        stop_sila_lab(proc)


def _settings(port: int, workdir: Path) -> dict[str, object]:
    return {"port": port, "insecure": True, "workdir": str(workdir), "responses": {"BandGap": "gap"}}


def _wait(oracle: Sila2Oracle, handles: list, timeout: float = 30) -> list:  # type: ignore[type-arg]
    end = time.monotonic() + timeout
    while not all(s.terminal for s in oracle.poll(handles)):
        assert time.monotonic() < end, "the instrument never finished"
        time.sleep(0.05)
    return oracle.results(handles)


def test_a_design_is_measured_and_an_erring_command_is_a_physics_failure(lab: tuple[Path, int], tmp_path: Path) -> None:
    folder, port = lab
    oracle = Sila2Oracle(**_settings(port, tmp_path))  # type: ignore[arg-type]
    before = len(executions(folder))
    handles = oracle.submit([BASE, BASE | {"efield": 0.95}])
    ok, bad = _wait(oracle, handles)
    assert ok.status is JobStatus.COMPLETED and 0.5 < ok.values["gap"] < 2.5, ok
    assert ok.provenance["execution_uuid"] == handles[0].native_id
    assert bad.status is JobStatus.FAILED and bad.error_class.value == "physics"
    assert bad.message.startswith("MeasurementFailed: the sample did not conduct")
    assert len(executions(folder)) == before + 2
    assert oracle.adopt([BASE], since=handles[0].submitted_at) == [handles[0]]


def test_an_instrument_that_is_down_or_restarted(tmp_path: Path) -> None:
    port = free_port()
    oracle = Sila2Oracle(**_settings(port, tmp_path / "jobs"))  # type: ignore[arg-type]
    with pytest.raises(OracleError, match="cannot reach"):
        oracle.submit([BASE])
    proc, _ = start_sila_lab(tmp_path / "lab", port=port, latency_s=5.0)
    try:
        (h,) = _once_up(oracle)
        assert oracle.poll([h]) == [JobStatus.RUNNING]
        stop_sila_lab(proc, kill=True)
        with pytest.raises(OracleError, match="unreachable"):
            oracle.poll([h])
        proc, _ = start_sila_lab(tmp_path / "lab", port=port)
        end = time.monotonic() + 30
        while True:  # gRPC waits out its reconnect backoff first, as the job driver waits out an outage
            try:
                (gone,) = oracle.results([h])
                break
            except OracleError:
                assert time.monotonic() < end, "the restarted instrument was never reached"
                time.sleep(0.2)  # a new instrument process: the execution is not known there
        assert gone.status is JobStatus.ABANDONED and gone.error_class.value == "infrastructure"
    finally:
        stop_sila_lab(proc)


def _once_up(oracle: Sila2Oracle) -> list:  # type: ignore[type-arg]
    """Submit ``BASE`` once the instrument answers: gRPC first waits out the reconnect backoff of
    the failed attempt (as the job driver waits out an outage)."""
    end = time.monotonic() + 30
    while True:
        try:
            return oracle.submit([BASE])
        except OracleError:
            assert time.monotonic() < end, "the instrument was never reached"
            time.sleep(0.2)


def test_wrong_mapping_is_one_clear_error(lab: tuple[Path, int], tmp_path: Path) -> None:
    _, port = lab
    with pytest.raises(OracleError, match="name no design column"):
        Sila2Oracle(port=port, insecure=True, parameters={"voltage": "V"}, workdir=tmp_path)
    oracle = Sila2Oracle(port=port, insecure=True, feature="Pipetting", workdir=tmp_path)
    with pytest.raises(OracleError, match="offers no feature 'Pipetting' \\(it offers DesignMeasurement\\)"):
        oracle.submit([BASE])


CONFIG = """
name = "instrument"
seed = 5
[[targets]]
value = 1.0
window = 0.1
hits = 50
[oracle]
name = "sila2"
[oracle.settings]
port = {port}
insecure = true
responses = {{BandGap = "gap"}}
[initial]
random = 4
[loop]
batch_size = 3
samples_per_target = 100
[budget]
iterations = 2
[ray]
actors = 1
cpus_per_actor = 0.25
[retry]
poll_interval_s = 0.05
[models]
""" + "\n".join(f"{k} = {v}" for k, v in TINY_MODELS.items())


@pytest.mark.slow
def test_a_campaign_killed_while_the_instrument_measures_never_measures_twice(tmp_path: Path) -> None:
    """``innloop run`` SIGKILLed once the instrument is measuring its first batch (each design
    takes 2 s), then run again, sampling on Ray (which loads protobuf before the oracle does):
    it re-attaches by execution UUID and finishes; the instrument counted one execution per
    ledger result, each design once."""
    lab_dir = tmp_path / "lab"
    proc, port = start_sila_lab(lab_dir, latency_s=2.0, fail_above=FAIL_ABOVE)
    config = tmp_path / "instrument.toml"
    config.write_text(CONFIG.format(port=port))
    env = os.environ | {"INNLOOP_STATE_DIR": str(tmp_path / "state"), "INNLOOP_TORCH_THREADS": "1"}
    env.pop(PURE, None)  # as a user starts it: `innloop run` chooses protobuf's implementation itself
    cmd = [sys.executable, "-m", "agent.cli.main", "run", str(config), "--no-prefect", "--no-ray", "-q"]
    try:
        first = subprocess.Popen(
            cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        inflight = tmp_path / "state" / "instrument" / "inflight.json"
        end = time.monotonic() + 60
        while not (len(executions(lab_dir)) >= 4 and inflight.exists() and '"submitted"' in inflight.read_text()):
            assert first.poll() is None and time.monotonic() < end, (
                first.stderr.read().decode()[-2000:] if first.stderr else ""
            )
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # the instrument is still measuring the batch
        first.wait(10)
        assert len(CampaignStore(tmp_path / "state", "instrument").ledger.records()) == 0
        again = subprocess.run([*cmd[:-2], "-q"], env=env, capture_output=True, text=True, timeout=300)  # Ray too
        assert again.returncode == 0, again.stderr[-3000:]
    finally:
        stop_sila_lab(proc)
    records = CampaignStore(tmp_path / "state", "instrument").ledger.records()
    ran = executions(lab_dir)
    assert len(records) == 7 and len(ran) == 7, (len(records), len(ran))
    assert sorted(r.result.handle.native_id for r in records) == sorted(e["uuid"] for e in ran)
    per_design = Counter(design_digest(e["design"]) for e in ran)
    assert max(per_design.values()) == 1, "the instrument measured a design twice"
    assert json.loads((tmp_path / "state" / "instrument" / "campaign.json").read_text())["iteration"] == 1


def test_a_job_past_its_time_limit_is_waited_for_not_sent_again(tmp_path: Path) -> None:
    """A SiLA 2 command cannot be cancelled (`oracles.base.KeepsRunning`): the job driver waits
    for a job past ``job_timeout_s`` instead of cancelling it and paying for a second execution."""
    from agent.campaign.config import RetrySpec
    from agent.campaign.driver import drive
    from agent.campaign.journal import FileJournal, Job

    proc, port = start_sila_lab(tmp_path / "new" / "lab", latency_s=1.5)  # the server makes its folder
    try:
        oracle = Sila2Oracle(**_settings(port, tmp_path / "jobs"))  # type: ignore[arg-type]
        retry = RetrySpec(poll_interval_s=0.05, job_timeout_s=0.3)
        new, left = drive(oracle, FileJournal(tmp_path / "journal"), [Job(BASE, "t")], retry)
    finally:
        stop_sila_lab(proc)
    assert left == [] and [r.result.status for r in new] == [JobStatus.COMPLETED]
    assert len(executions(tmp_path / "new" / "lab")) == 1


def test_a_process_that_loaded_protobuf_first_gets_one_clear_error(tmp_path: Path) -> None:
    code = (
        "import google.protobuf.message\n"  # as Ray does, before the oracle
        "from oracles.sila2 import Sila2Oracle\n"
        f"o = Sila2Oracle(port=1, insecure=True, workdir={str(tmp_path)!r})\n"
        f"o.submit([{BASE!r}])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != PURE}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "OracleRefused: sila2: the SiLA 2 client needs protobuf's pure-Python" in out.stderr
