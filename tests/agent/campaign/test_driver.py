"""The job driver on a journal of its own: write order, a job id recorded once, refusals, orphans.

collect() (the campaign's use of it) is tested in test_collect.py, measure and
confirmation in test_measure.py and the insight and report tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from agent.campaign.config import RetrySpec
from agent.campaign.driver import drive
from agent.campaign.journal import FileJournal, Job, in_flight, keep_in_flight
from agent.campaign.ledger import Ledger
from agent.core.errors import DesignError, StateError
from agent.core.materials import load_dataset
from oracles.base import Handle, JobStatus, Result, design_digest
from oracles.mock import MockOracle
from oracles.table import TableOracle
from oracles.testing.counting import CountingMock
from oracles.testing.faulty import Fault, FaultyOracle

RETRY = RetrySpec(max_attempts=3, backoff_s=0.0, poll_interval_s=0.01, max_backoff_s=0.02)


def _no_sleep(_seconds: float) -> None:
    """Poll again at once: the mock's jobs with latency 0 are done on the first poll."""


@pytest.fixture(scope="module")
def rows() -> list[dict[str, float]]:
    """Distinct valid MoS2 designs (rows of the bundled data, so the table oracle has them too)."""
    data = load_dataset("mos2")
    out: dict[str, dict[str, float]] = {}
    for x in data.X[:40]:
        row = dict(zip(data.space.names, map(float, x)))
        out.setdefault(design_digest(row), row)
    return list(out.values())[:6]


def _mock(tmp_path: Path, **kw: Any) -> MockOracle:
    settings: dict[str, Any] = {"latency_s": 0.0, "noise_eV": 0.0, "failure_rate": 0.0, "seed": 0}
    return MockOracle(workdir=tmp_path / "oracle", **(settings | kw))


def test_job_json_round_trip(rows: list[dict[str, float]]) -> None:
    h = Handle("mock", "j1", rows[0], native_id="n", workdir="/w", submitted_at=12.5)
    job = Job(rows[0], "tag", attempt=2, handle=h, not_before=99.0)
    assert Job.from_json(json.loads(json.dumps(job.to_json()))) == job
    bare = Job.from_json({"design": {"a": 1}, "tag": "t"})
    assert bare.attempt == 1 and bare.handle is None and bare.not_before == 0.0 and bare.design == {"a": 1.0}


def test_file_journal_keeps_jobs_sealed(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    journal = FileJournal(tmp_path / "j")
    assert in_flight(journal) == ([], None)
    jobs = [Job(rows[0], "a"), Job(rows[1], "b", handle=Handle("mock", "j", rows[1]))]
    keep_in_flight(journal, jobs, submitting=123.0)
    assert in_flight(journal) == (jobs, 123.0)
    keep_in_flight(journal, jobs)
    assert in_flight(journal) == (jobs, None), "phase submitted: no submit of unknown outcome"
    journal.inflight_path.write_text(journal.inflight_path.read_text().replace('"tag": "a"', '"tag": "z"'))
    with pytest.raises(StateError, match="checksum mismatch"):
        in_flight(journal)
    keep_in_flight(journal, [])
    assert not journal.inflight_path.exists()


def test_results_already_in_the_ledger_are_not_recorded_twice(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    # a run killed after appending a result but before dropping its job from inflight.json
    journal, oracle = FileJournal(tmp_path / "j"), _mock(tmp_path)
    handles = oracle.submit(rows[:2])
    journal.ledger.append(oracle.results(handles[:1])[0], iteration=0, tag="x")
    jobs = [Job(r, "x", handle=h) for r, h in zip(rows, handles)]
    logged: list[str] = []
    new, left = drive(oracle, journal, jobs, RETRY, sleep=_no_sleep, log=logged.append)
    assert left == [] and [r.result.handle.job_id for r in new] == [handles[1].job_id]
    assert len(journal.ledger.records()) == 2 and oracle.submissions() == 2
    assert any("in the ledger already" in m for m in logged)


def test_a_round_of_results_is_synced_once_before_its_jobs_leave_inflight(
    tmp_path: Path, rows: list[dict[str, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of jobs may finish in one poll round: one fsync for all, still before the in-flight file drops them."""
    journal, oracle = FileJournal(tmp_path / "j"), _mock(tmp_path)
    events: list[str] = []
    ledger = journal.ledger
    append, sync, write = ledger.append, ledger.sync, journal.write_inflight

    def spy_append(result: Result, **kw: Any) -> Any:
        events.append("append" if kw.get("sync") is False else "append+fsync")
        return append(result, **kw)

    def spy_sync() -> None:
        events.append("sync")
        sync()

    def spy_write(payload: dict[str, Any]) -> None:
        events.append(f"inflight:{payload['phase']}:{len(payload['jobs'])}")
        write(payload)

    monkeypatch.setattr(ledger, "append", spy_append)
    monkeypatch.setattr(ledger, "sync", spy_sync)
    monkeypatch.setattr(journal, "write_inflight", spy_write)
    monkeypatch.setattr(journal, "clear_inflight", lambda: events.append("inflight:cleared"))
    new, left = drive(oracle, journal, [Job(r, "t") for r in rows[:5]], RETRY, sleep=_no_sleep)
    assert left == [] and len(new) == 5
    assert events == ["inflight:submitting:5", "inflight:submitted:5"] + ["append"] * 5 + ["sync", "inflight:cleared"]
    assert [r.seq for r in Ledger(ledger.path).records()] == [0, 1, 2, 3, 4]


def test_a_refused_design_is_handed_back_and_the_others_go_on(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    journal, table = FileJournal(tmp_path / "j"), TableOracle()
    off_table = rows[1] | {"a": rows[1]["a"] + 0.2}
    refused: list[tuple[Job, Exception]] = []
    jobs = [Job(rows[0], "t0"), Job(off_table, "off"), Job(rows[2], "t2")]
    new, left = drive(table, journal, jobs, RETRY, refuse=lambda j, e: refused.append((j, e)), sleep=_no_sleep)
    assert left == [] and sorted(r.tag for r in new) == ["t0", "t2"] and all(r.result.ok for r in new)
    assert [(j.tag, type(e)) for j, e in refused] == [("off", DesignError)]
    # without `refuse` the batch is refused as a whole, and nothing is left "submitting"
    with pytest.raises(DesignError):
        drive(table, FileJournal(tmp_path / "k"), [Job(rows[3], "a"), Job(off_table, "b")], RETRY, sleep=_no_sleep)
    jobs_left, since = in_flight(FileJournal(tmp_path / "k"))
    assert [j.tag for j in jobs_left] == ["a", "b"] and since is None and not any(j.handle for j in jobs_left)


def test_orphans_are_reattached_when_paid_for_and_never_submitted(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    journal, oracle = FileJournal(tmp_path / "j"), _mock(tmp_path)
    (paid,) = oracle.submit(rows[:1])
    jobs = [Job(rows[0], "old", handle=paid), Job(rows[1], "old"), Job(rows[2], "new")]
    new, left = drive(oracle, journal, jobs, RETRY, orphan=lambda j: j.tag == "old", sleep=_no_sleep)
    assert left == [] and oracle.submissions() == 2, "the unpaid orphan was dropped, not submitted"
    assert sorted((r.tag, r.result.handle.job_id == paid.job_id) for r in new) == [("new", False), ("old", True)]


def test_waiting_out_a_backoff_sleeps_until_it_ends(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    inner = _mock(tmp_path)
    oracle = FaultyOracle(inner, {design_digest(rows[0]): [Fault.LOST]})
    waits: list[float] = []

    def nap(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    retry = RETRY.model_copy(update={"backoff_s": 0.2, "max_backoff_s": 1.0})
    new, left = drive(oracle, FileJournal(tmp_path / "j"), [Job(rows[0], "t")], retry, sleep=nap)
    assert left == [] and [r.result.status for r in new] == [JobStatus.ABANDONED, JobStatus.COMPLETED]
    assert len(waits) <= 3 and max(waits) > 0.1, f"no polling every 0.01 s through the backoff: {waits}"


class _ForgetfulOracle:
    """A mock that dies on its ``die_on``-th submit and, like the http oracle, can adopt only
    the jobs of its last submit (its key journal keeps the latest batch)."""

    def __init__(self, inner: MockOracle, die_on: int) -> None:
        self.inner, self.name, self.space = inner, inner.name, inner.space
        self.die_on, self.submits, self.started = die_on, 0, 0
        self.last: list[Handle] = []

    def submit(self, designs: Any) -> list[Handle]:
        self.submits += 1
        if self.submits == self.die_on:
            raise KeyboardInterrupt  # the process is killed between two submits
        self.last = self.inner.submit(designs)
        self.started += len(self.last)
        return self.last

    def adopt(self, designs: Any, since: float) -> list[Handle | None]:
        known = {design_digest(h.design): h for h in self.last}
        return [known.get(design_digest(d)) for d in designs]

    def poll(self, handles: Any) -> list[JobStatus]:
        return self.inner.poll(handles)

    def results(self, handles: Any) -> list[Result]:
        return self.inner.results(handles)

    def cancel(self, handles: Any) -> None:
        self.inner.cancel(handles)


def test_one_at_a_time_each_handle_is_kept_before_the_next_submit(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    journal = FileJournal(tmp_path / "j")
    jobs = [Job(r, f"t{i}") for i, r in enumerate(rows[:3])]
    killed = _ForgetfulOracle(_mock(tmp_path), die_on=3)
    with pytest.raises(KeyboardInterrupt):
        drive(killed, journal, jobs, RETRY, refuse=lambda _job, _exc: None, sleep=_no_sleep)
    kept, since = in_flight(journal)
    assert since is not None and [j.handle is not None for j in kept] == [True, True, False]
    again = _ForgetfulOracle(_mock(tmp_path), die_on=0)
    new, left = drive(again, journal, kept, RETRY, since=since, refuse=lambda _job, _exc: None, sleep=_no_sleep)
    assert not left and len(new) == 3 and again.started == 1, (
        "the two jobs already started are re-attached, not re-sent"
    )
    assert killed.started + again.started == 3


def _counting(tmp_path: Path, latency_s: float) -> CountingMock:
    return CountingMock(workdir=tmp_path / "oracle", latency_s=latency_s, seed=0)


def test_max_in_flight_caps_the_jobs_at_the_oracle(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    journal, oracle = FileJournal(tmp_path / "j"), _counting(tmp_path, latency_s=0.05)
    jobs = [Job(r, f"r{i}") for i, r in enumerate(rows)]
    seen: list[tuple[int, int, int]] = []
    new, left = drive(oracle, journal, jobs, RETRY, max_in_flight=2, progress=lambda *c: seen.append(c))
    assert not left and len(new) == len(rows) == oracle.submissions()
    assert oracle.most == 2, "never more than max_in_flight jobs at the oracle"
    assert {r.result.handle.design["a"] for r in new} == {r["a"] for r in rows}


def test_the_cap_holds_across_a_restart(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    # a run stopped with 2 jobs at the oracle and 4 waiting: the next run submits none before a slot frees
    journal, oracle = FileJournal(tmp_path / "j"), _counting(tmp_path, latency_s=0.3)
    first = [Job(r, f"r{i}") for i, r in enumerate(rows)]
    _, left = drive(oracle, journal, first, RETRY, max_in_flight=2, deadline=time.time() + 0.05)
    assert len(left) == len(rows) and sum(j.handle is not None for j in left) == 2
    jobs, _ = in_flight(journal)
    assert sum(j.handle is not None for j in jobs) == 2, "the journal keeps the waiting designs without handles"
    again = _counting(tmp_path, latency_s=0.3)
    again.live = {j.handle.job_id for j in jobs if j.handle is not None}
    new, rest = drive(again, journal, jobs, RETRY, max_in_flight=2)
    assert not rest and len(new) == len(rows) and again.most == 2 and again.submissions() == len(rows)


def test_enough_returns_early_and_keeps_the_other_jobs(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    journal = FileJournal(tmp_path / "j")
    oracle = FaultyOracle(_mock(tmp_path), {design_digest(r): [Fault.STUCK] for r in rows[2:4]})  # running for ever
    jobs = [Job(r, "s") for r in rows[2:4]] + [Job(r, "q") for r in rows[:2]]
    new, left = drive(oracle, journal, jobs, RETRY, enough=2)
    assert len(new) == 2 and {r.tag for r in new} == {"q"}
    assert {j.tag for j in left} == {"s"} and all(j.handle is not None for j in left)
    assert [j.handle for j in in_flight(journal)[0]] == [j.handle for j in left], "the rest stay in the journal"
    new, left = drive(oracle, journal, left, RETRY, enough=0)  # a refill with its results already in
    assert new == [] and len(left) == 2


def test_a_resent_failure_does_not_count_as_enough(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    oracle = FaultyOracle(_mock(tmp_path), {design_digest(rows[0]): [Fault.LOST]})
    journal = FileJournal(tmp_path / "j")
    new, left = drive(oracle, journal, [Job(rows[0], "a"), Job(rows[1], "b")], RETRY, enough=2, sleep=_no_sleep)
    assert not left and len(new) == 3, "the re-sent design kept its slot until its second result"
