from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.campaign.config import RetrySpec
from agent.core.materials import get_material
from agent.insight.confirm import confirm_pairs, measure_designs
from agent.insight.demo import format_demo, run_demo
from agent.insight.switching import pair_table
from agent.insight.transitions import switching_report
from agent.models.surrogate import EnsembleConfig
from oracles.base import ErrorClass, Handle, JobStatus, OracleError, Result, design_digest
from oracles.mock import MockOracle
from oracles.table import TableOracle
from oracles.testing.faulty import Fault, FaultyOracle

MAT = get_material("mos2")
SPACE = MAT.space


@pytest.fixture(scope="module")
def table() -> TableOracle:
    return TableOracle()


@pytest.fixture(scope="module")
def rows() -> dict[str, np.ndarray]:
    """One real row each at 0 eV, ~1.0 eV and ~0.5 eV from the bundled data."""
    d = MAT.dataset().deduplicate("exact").frame  # type: ignore[misc]
    pick = {"metal": d["gap"] == 0.0, "one": (d["gap"] - 1.0).abs() <= 0.02, "half": (d["gap"] - 0.5).abs() <= 0.02}
    return {k: d.loc[m, SPACE.names].to_numpy()[0] for k, m in pick.items()}


def pairs_of(ends: list[tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    X0, X1 = np.array([a for a, _ in ends]), np.array([b for _, b in ends])
    return pair_table(X0, X1, [(i, i, 0.0) for i in range(len(ends))], SPACE)


def test_table_oracle_confirms_a_real_switch_and_explains_misses(table: TableOracle, rows: dict[str, Any]) -> None:
    off_table = rows["one"] + np.r_[0.05, np.zeros(6)]
    t = pairs_of([(rows["metal"], rows["one"]), (rows["metal"], rows["half"]), (rows["metal"], off_table)])
    t.loc[:, "note"] = ["", "kept", ""]
    got = confirm_pairs(t, table, SPACE, targets=(0.0, 1.0), windows=0.1, poll_interval=0.001)
    assert got["confirmed"].tolist() == [True, False, False]
    assert got["measured_0"].tolist() == [0.0, 0.0, 0.0]
    assert abs(got["measured_1"].iloc[0] - 1.0) <= 0.02 and abs(got["measured_1"].iloc[1] - 0.5) <= 0.02
    assert np.isnan(got["measured_1"].iloc[2])
    assert got["note"].iloc[0] == ""
    assert got["note"].iloc[1].startswith("kept; end 1 measured 0.5") and "outside 1 ± 0.1" in got["note"].iloc[1]
    assert got["note"].iloc[2].startswith("end 1: not submitted: DesignError")


def test_only_the_top_rows_are_measured(table: TableOracle, rows: dict[str, Any]) -> None:
    t = pairs_of([(rows["metal"], rows["one"])] * 3)
    got = confirm_pairs(t, table, SPACE, targets=(0.0, 1.0), top=1, poll_interval=0.001)
    assert got["confirmed"].iloc[0] and got["confirmed"].iloc[1:].isna().all()
    assert got["measured_1"].iloc[1:].isna().all()
    none = confirm_pairs(t.iloc[:0], table, SPACE, targets=(0.0, 1.0))
    assert none.empty and list(none.columns[-6:]) == [
        "measured_0",
        "measured_1",
        "evidence_0",
        "evidence_1",
        "confirmed",
        "note",
    ]


class Scripted:
    """A fake oracle: ``mode`` "stuck" (never finishes), "fail" (jobs fail), "poll" (poll raises)."""

    name = "scripted"
    space = SPACE

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.submitted = 0
        self.cancelled: list[Handle] = []

    def submit(self, designs: Any) -> list[Handle]:
        self.submitted += 1
        return [Handle(self.name, str(self.submitted), d) for d in designs]

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        if self.mode == "poll":
            raise OracleError("lab server down\nsecond line")
        return [JobStatus.RUNNING if self.mode == "stuck" else JobStatus.FAILED for _ in handles]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        return [Result.failure(h, ErrorClass.PHYSICS, "SCF did not converge") for h in handles]

    def cancel(self, handles: Sequence[Handle]) -> None:
        self.cancelled.extend(handles)


QUICK = RetrySpec(max_attempts=1, backoff_s=0.0, poll_interval_s=0.01, max_backoff_s=0.01, outage_s=0.05)


def test_failures_become_reasons_never_exceptions(rows: dict[str, Any]) -> None:
    X = np.array([rows["metal"], rows["one"], rows["metal"]])
    failed = Scripted("fail")
    got = measure_designs(failed, X, poll_interval=0.001)
    assert failed.submitted == 2, "identical designs are measured once"
    assert got[0] == (None, "failed, physics: SCF did not converge") and got[2] == got[0]
    down = Scripted("poll")
    got = measure_designs(down, X, retry=QUICK)
    assert got[1][0] is None and str(got[1][1]).startswith("not measured: OracleUnavailable: oracle 'scripted'")
    assert "lab server down" in str(got[1][1]) and len(down.cancelled) == 2, "no one would collect them"
    stuck = Scripted("stuck")
    naps: list[float] = []
    got = measure_designs(stuck, X, retry=QUICK, timeout_s=1.0, sleep=naps.append)
    assert all(r == (None, "timeout, infrastructure: no result after 1 s: cancelled") for r in got)
    assert len(stuck.cancelled) == 2


def test_confirmation_waits_out_an_outage_and_pays_nothing_twice(tmp_path: Path, rows: dict[str, Any]) -> None:
    inner = MockOracle(workdir=tmp_path / "mock", latency_s=0.0, noise_eV=0.0, failure_rate=0.0)
    faulty = FaultyOracle(inner)
    faulty.down = 5  # the first five calls (submits, adopts) fail: a lab server that is down
    X = np.array([rows["metal"], rows["one"], rows["half"]])
    naps: list[float] = []
    retry = QUICK.model_copy(update={"outage_s": 60.0})
    got = measure_designs(faulty, X, retry=retry, sleep=naps.append)
    assert [v for v, _ in got] == pytest.approx(list(inner.gap(X))) and faulty.down == 0
    assert inner.submissions() == 3, "a submit that raised was adopted, never paid twice"
    assert len(naps) >= 5 and max(naps) <= 0.01


def test_confirmation_cancels_a_job_past_its_time_limit(tmp_path: Path, rows: dict[str, Any]) -> None:
    inner = MockOracle(workdir=tmp_path / "mock", latency_s=0.0, noise_eV=0.0, failure_rate=0.0)
    X = np.array([rows["metal"], rows["one"]])
    never = design_digest(dict(zip(SPACE.names, map(float, X[1]))))
    faulty = FaultyOracle(inner, {never: [Fault.STUCK, Fault.STUCK]})
    got = measure_designs(faulty, X, retry=QUICK.model_copy(update={"max_attempts": 2}), timeout_s=0.05)
    assert got[0] == (pytest.approx(inner.gap(X[:1])[0]), None)
    assert got[1] == (None, "timeout, infrastructure: no result after 0.05 s: cancelled")
    assert faulty.calls["cancel"] == 2 and inner.submissions() == 3, "timed out, retried once, timed out again"


def test_demo_reports_verified_and_confirmed_switches() -> None:
    quick = EnsembleConfig(members=2, hidden=32, layers=2, epochs=15, seed=0)
    result = run_demo(top=8, surrogate=quick)
    rep = result.report
    assert rep.summary["pairs"] == 8 and rep.summary["verified"] == 8 and rep.summary["confirm_attempted"] == 8
    assert 0 <= rep.summary["confirmed"] <= 8
    assert rep.table["distance"].is_monotonic_increasing
    assert rep.table["confirmed"].notna().all()
    ok = rep.table["confirmed"].astype(bool)
    assert ((rep.table.loc[ok, "measured_1"] - 1.0).abs() <= 0.1).all()
    text = format_demo(result, show=3)
    assert "confirmed by the table oracle" in text and len(text.splitlines()) == 3 + 1 + 3


def test_switching_report_with_the_table_oracle(table: TableOracle, rows: dict[str, Any]) -> None:
    class Truth:  # a perfect surrogate for these three rows
        def predict(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            X = SPACE.from_unit(U)
            gaps = [0.0 if np.allclose(x, rows["metal"]) else 1.0 if np.allclose(x, rows["one"]) else 0.5 for x in X]
            return np.array(gaps), np.zeros(len(X))

    rep = switching_report(
        np.array([rows["metal"]]),
        np.array([rows["one"], rows["half"]]),
        space=SPACE,
        model=Truth(),
        targets=(0.0, 1.0),
        oracle=table,
        poll_interval=0.001,
    )
    assert rep.summary["in_window"] == [1, 1]
    assert rep.summary["pairs"] == 1 and rep.summary["confirmed"] == 1 and rep.summary["confirm_attempted"] == 1
