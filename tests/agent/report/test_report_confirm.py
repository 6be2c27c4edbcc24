"""The report's confirmation measurements: its own journal (``confirm/``) on the job driver.

Never paid twice, re-attached after a kill, outages waited out (or given up on with the
jobs kept for the next report) and jobs past their time limit cancelled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.campaign.config import RetrySpec
from agent.campaign.journal import in_flight
from agent.campaign.measure import Tally
from agent.core.errors import ConfigError
from agent.core.materials import get_material
from agent.core.space import DesignSpace
from agent.insight import measure_designs
from agent.report.recorded import confirm_journal
from oracles.base import ErrorClass, Handle, JobStatus, Result, design_digest
from oracles.mock import MockOracle
from oracles.testing.faulty import Fault, FaultyOracle

SPACE = get_material("mos2").space
QUICK = RetrySpec(max_attempts=1, backoff_s=0.0, poll_interval_s=0.01, max_backoff_s=0.01, outage_s=0.05)


class _CountingOracle:
    """A table-like oracle that counts submissions and can fail a design for infrastructure reasons."""

    name = "counting"

    def __init__(self, space: DesignSpace, infra_fail: bool = False, killed: bool = False) -> None:
        self.space = space
        self.submits = 0
        self.infra_fail = infra_fail
        self.killed = killed  # the process dies when it reads a result
        self.prefix = "failing" if infra_fail else "job"

    def submit(self, designs: Any) -> list[Handle]:
        self.submits += len(designs)
        return [Handle("counting", f"{self.prefix}-{self.submits}-{i}", d) for i, d in enumerate(designs)]

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        return [JobStatus.COMPLETED for _ in handles]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        if self.killed:
            raise KeyboardInterrupt
        if self.infra_fail:
            return [Result.failure(h, ErrorClass.INFRASTRUCTURE, "lost") for h in handles]
        return [Result(h, JobStatus.COMPLETED, {"gap": h.design["a"]}) for h in handles]

    def cancel(self, handles: Sequence[Handle]) -> None:
        pass


def _designs(n: int) -> np.ndarray:
    return SPACE.from_unit(np.random.default_rng(0).random((n, SPACE.dim)))


def _mock(folder: Path, **kw: Any) -> MockOracle:
    return MockOracle(workdir=folder, **({"latency_s": 0.0, "noise_eV": 0.0, "failure_rate": 0.0} | kw))


def test_confirmations_are_never_paid_twice(tmp_path: Path) -> None:
    X = _designs(3)
    inner = _CountingOracle(SPACE)
    first = measure_designs(inner, X, journal=confirm_journal(tmp_path), poll_interval=0.001)
    assert inner.submits == 3 and [v for v, _ in first] == pytest.approx(list(X[:, 0]))
    again, tally = confirm_journal(tmp_path), Tally()  # a later run: everything comes from the ledger
    assert measure_designs(inner, X, journal=again, tally=tally, poll_interval=0.001) == first
    assert inner.submits == 3 and (tally.reused, tally.reattached, tally.submitted) == (3, 0, 0)
    assert len(again.ledger.records()) == 3 and not (tmp_path / "inflight.json").exists()


def test_a_killed_confirmation_is_reattached(tmp_path: Path) -> None:
    X = _designs(1)
    dying = _CountingOracle(SPACE, killed=True)
    with pytest.raises(KeyboardInterrupt):
        measure_designs(dying, X, journal=confirm_journal(tmp_path), poll_interval=0.001)
    assert [j.handle is not None for j in in_flight(confirm_journal(tmp_path))[0]] == [True]
    dying.killed, tally = False, Tally()
    got = measure_designs(dying, X, journal=confirm_journal(tmp_path), tally=tally, poll_interval=0.001)
    assert got[0][0] == pytest.approx(X[0, 0]) and dying.submits == 1 and tally.reattached == 1


def test_infrastructure_failures_are_tried_again_by_the_next_report(tmp_path: Path) -> None:
    X = _designs(1)
    failing = _CountingOracle(SPACE, infra_fail=True)
    got = measure_designs(failing, X, journal=confirm_journal(tmp_path), retry=QUICK, poll_interval=0.001)
    assert got == [(None, "failed, infrastructure: lost")]
    working = _CountingOracle(SPACE)
    got = measure_designs(working, X, journal=confirm_journal(tmp_path), retry=QUICK, poll_interval=0.001)
    assert got[0][0] == pytest.approx(X[0, 0])
    assert working.submits == 1 and len(confirm_journal(tmp_path).ledger.records()) == 2


def test_a_short_outage_is_waited_out(tmp_path: Path) -> None:
    X = _designs(3)
    inner = _mock(tmp_path / "mock")
    faulty = FaultyOracle(inner)
    faulty.down = 4
    naps: list[float] = []
    retry = QUICK.model_copy(update={"outage_s": 60.0})
    got = measure_designs(faulty, X, journal=confirm_journal(tmp_path / "c"), retry=retry, sleep=naps.append)
    assert [v for v, _ in got] == pytest.approx(list(inner.gap(X))) and faulty.down == 0 and len(naps) >= 4
    assert inner.submissions() == 3 and len(confirm_journal(tmp_path / "c").ledger.records()) == 3


def test_an_oracle_down_past_outage_gives_reasons_and_keeps_the_jobs(tmp_path: Path) -> None:
    X = _designs(2)
    inner = _mock(tmp_path / "mock", latency_s=60)
    naps: list[float] = []

    def go_down(seconds: float) -> None:  # down from the first poll on, the jobs running
        naps.append(seconds)
        if len(naps) == 3:
            faulty.down = 10**9

    faulty = FaultyOracle(inner, sleep=go_down)
    faulty.slow = 3  # one submit per design, then the first poll
    got = measure_designs(faulty, X, journal=confirm_journal(tmp_path / "c"), retry=QUICK)
    assert all(v is None and str(why).startswith("not measured: OracleUnavailable: oracle 'mock'") for v, why in got)
    assert faulty.calls["cancel"] == 0 and inner.submissions() == 2, "kept for the next report, not cancelled"
    back, tally = _mock(tmp_path / "mock"), Tally()  # the lab is back and the jobs have finished
    got = measure_designs(back, X, journal=confirm_journal(tmp_path / "c"), tally=tally, retry=QUICK)
    assert [v for v, _ in got] == pytest.approx(list(inner.gap(X)))
    assert back.submissions() == 2 and (tally.reattached, tally.submitted) == (2, 0)


def test_a_confirmation_past_its_time_limit_is_cancelled(tmp_path: Path) -> None:
    X = _designs(2)
    inner = _mock(tmp_path / "mock")
    faulty = FaultyOracle(inner, {design_digest(dict(zip(SPACE.names, map(float, X[1])))): [Fault.STUCK]})
    journal = confirm_journal(tmp_path / "c")
    got = measure_designs(faulty, X, journal=journal, retry=QUICK, timeout_s=0.05)
    assert got[0][0] == pytest.approx(inner.gap(X[:1])[0])
    assert got[1] == (None, "timeout, infrastructure: no result after 0.05 s: cancelled")
    assert faulty.calls["cancel"] == 1 and [r.result.status for r in journal.ledger.records()][1] is JobStatus.TIMEOUT
    tally = Tally()  # a timeout is the infrastructure's: the next report measures that end again
    got = measure_designs(faulty, X, journal=confirm_journal(tmp_path / "c"), tally=tally, retry=QUICK)
    assert got[1][0] == pytest.approx(inner.gap(X[1:])[0]) and (tally.reused, tally.submitted) == (1, 1)


def test_the_report_waits_at_most_its_wait_and_keeps_the_jobs(tmp_path: Path) -> None:
    X = _designs(2)
    slow = _mock(tmp_path / "mock", latency_s=60.0)  # jobs that outlast the report's wait
    got = measure_designs(slow, X, journal=confirm_journal(tmp_path / "c"), retry=QUICK, wait_s=0.2)
    assert got == [(None, "still at the oracle after 0.2 s (kept for the next report)")] * 2
    kept, _ = in_flight(confirm_journal(tmp_path / "c"))
    assert len(kept) == 2 and all(j.handle is not None for j in kept)
    tally = Tally()  # the next report re-attaches to them: nothing is paid twice
    measure_designs(slow, X, journal=confirm_journal(tmp_path / "c"), tally=tally, retry=QUICK, wait_s=0.1)
    assert (tally.reattached, tally.submitted) == (2, 0)
    with pytest.raises(ConfigError, match="positive number of seconds"):
        measure_designs(slow, X, journal=confirm_journal(tmp_path / "c"), wait_s=float("nan"))
    with pytest.raises(ConfigError, match="job_timeout_s: must be > 0"):
        measure_designs(slow, X, journal=confirm_journal(tmp_path / "c"), timeout_s=-1.0)


def test_an_older_reports_jobs_in_flight_are_upgraded(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "inflight.json").write_text("{}")
    assert in_flight(confirm_journal(tmp_path / "empty")) == ([], None)
    X = _designs(1)
    inner = _CountingOracle(SPACE)
    (handle,) = inner.submit([dict(zip(SPACE.names, map(float, X[0])))])
    (tmp_path / "old").mkdir()
    legacy = {design_digest(handle.design): {"handle": handle.to_json()}}
    (tmp_path / "old" / "inflight.json").write_text(json.dumps(legacy))
    tally = Tally()
    got = measure_designs(inner, X, journal=confirm_journal(tmp_path / "old"), tally=tally, poll_interval=0.001)
    assert got[0][0] == pytest.approx(X[0, 0]) and inner.submits == 1 and tally.reattached == 1
