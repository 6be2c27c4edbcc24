"""collect(): submit, retry, time out, stop at a deadline and re-attach, on the real mock oracle
(the driver's rules on any journal: test_driver.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.campaign.collect import Job, collect
from agent.campaign.config import RetrySpec
from agent.campaign.store import CampaignStore
from agent.core.errors import StateError
from agent.core.materials import load_dataset
from oracles.base import (
    ErrorClass,
    Handle,
    JobStatus,
    OracleError,
    OracleRefused,
    OracleUnavailable,
    Result,
    design_digest,
)
from oracles.mock import MockOracle


def _no_sleep(_seconds: float) -> None:
    """Poll again at once: the mock's jobs with latency 0 are done on the first poll."""


def _store(tmp_path: Path) -> CampaignStore:
    store = CampaignStore(tmp_path / "state", "c")
    store.create({}, "fp", "")
    return store


def _oracle(tmp_path: Path, **kw: Any) -> MockOracle:
    # explicit settings: INNLOOP_MOCK_* variables of the environment must not leak in
    settings: dict[str, Any] = {"latency_s": 0.0, "noise_eV": 0.0, "failure_rate": 0.0, "seed": 0}
    return MockOracle(workdir=tmp_path / "oracle", **(settings | kw))


def _retry(**kw: Any) -> RetrySpec:
    base: dict[str, Any] = {"max_attempts": 3, "backoff_s": 0.0, "poll_interval_s": 0.01, "job_timeout_s": None}
    return RetrySpec(**(base | kw))


def _outcome(r: Result) -> str:
    if r.ok:
        return "C"
    return "P" if r.error_class is ErrorClass.PHYSICS else "I"


@pytest.fixture(scope="module")
def designs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, float]]]:
    """Valid MoS2 designs grouped by their outcomes over three attempts at failure_rate 1, seed 0.

    Outcomes are a pure function of (seed, design, attempt), so a fresh work folder
    reproduces them: e.g. "III" fails on infrastructure three times, "ICC" fails once
    then completes, "PPP" is a physics failure every time.
    """

    data = load_dataset("mos2")
    rows: list[dict[str, float]] = []
    seen: set[str] = set()
    for x in data.X[:80]:
        row = dict(zip(data.space.names, map(float, x)))
        if design_digest(row) not in seen:
            seen.add(design_digest(row))
            rows.append(row)
    oracle = MockOracle(workdir=tmp_path_factory.mktemp("scout"), latency_s=0.0, noise_eV=0.0, failure_rate=1.0, seed=0)
    runs = [[_outcome(r) for r in oracle.results(oracle.submit(rows))] for _ in range(3)]
    groups: dict[str, list[dict[str, float]]] = {}
    for row, pattern in zip(rows, ("".join(p) for p in zip(*runs))):
        groups.setdefault(pattern, []).append(row)
    for needed in ("PPP", "III", "ICC", "CCC"):
        assert needed in groups, f"no design with outcome {needed} among {sorted(groups)}"
    return groups


def test_all_jobs_complete(tmp_path: Path, designs: dict[str, list[dict[str, float]]]) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path)
    rows = designs["PPP"][:2] + designs["III"][:1] + designs["CCC"][:2]  # no failures at rate 0
    jobs = [Job(r, f"t{i}") for i, r in enumerate(rows)]
    new, left = collect(oracle, store, jobs, 3, _retry(), sleep=_no_sleep)
    assert left == []
    records = store.ledger.records()
    assert len(records) == len(new) == 5
    assert [r.seq for r in records] == [r.seq for r in new]
    assert all(r.result.ok and r.result.status is JobStatus.COMPLETED for r in records)
    assert sorted(r.tag for r in records) == [f"t{i}" for i in range(5)]
    assert {r.iteration for r in records} == {3}
    assert sorted(design_digest(r.result.handle.design) for r in records) == sorted(map(design_digest, rows))
    assert store.read_inflight() is None
    assert not (store.root / "inflight.json").exists()
    assert oracle.submissions() == 5


def test_empty_batch_does_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path)
    assert collect(oracle, store, [], 0, _retry(), sleep=_no_sleep) == ([], [])
    assert oracle.submissions() == 0 and store.read_inflight() is None


def test_infrastructure_failures_are_retried_physics_ones_are_not(
    tmp_path: Path, designs: dict[str, list[dict[str, float]]]
) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path, failure_rate=1.0, seed=0)
    physics, always_infra, once_infra = designs["PPP"][0], designs["III"][0], designs["ICC"][0]
    jobs = [Job(physics, "p"), Job(always_infra, "i"), Job(once_infra, "o")]
    new, left = collect(oracle, store, jobs, 0, _retry(max_attempts=3), sleep=_no_sleep)
    assert left == []
    records = store.ledger.records()
    assert len(records) == len(new) == 1 + 3 + 2
    by_tag: dict[str, list[Result]] = {}
    for rec in records:
        by_tag.setdefault(rec.tag, []).append(rec.result)
    assert [_outcome(r) for r in by_tag["p"]] == ["P"], "a physics failure is recorded once, never re-sent"
    assert [_outcome(r) for r in by_tag["i"]] == ["I", "I", "I"], "re-sent up to max_attempts"
    assert [_outcome(r) for r in by_tag["o"]] == ["I", "C"], "re-sent until it completes"
    assert all(r.status is JobStatus.FAILED for r in by_tag["i"])
    assert len({r.handle.job_id for r in by_tag["i"]}) == 3, "each attempt is its own job"
    assert oracle.submissions() == 6
    assert store.read_inflight() is None


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_max_attempts_caps_resubmission(
    tmp_path: Path, designs: dict[str, list[dict[str, float]]], max_attempts: int
) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path, failure_rate=1.0, seed=0)
    new, left = collect(
        oracle, store, [Job(designs["III"][0], "i")], 0, _retry(max_attempts=max_attempts), sleep=_no_sleep
    )
    assert left == []
    assert [_outcome(r.result) for r in new] == ["I"] * max_attempts
    assert oracle.submissions() == max_attempts


def test_backoff_between_attempts(tmp_path: Path, designs: dict[str, list[dict[str, float]]]) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path, failure_rate=1.0, seed=0)
    collect(oracle, store, [Job(designs["III"][0], "i")], 0, _retry(max_attempts=3, backoff_s=0.2))
    times = [r.result.handle.submitted_at for r in store.ledger.records()]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.2, "first re-submission waits backoff_s"
    assert times[2] - times[1] >= 0.4, "the wait doubles with each attempt"


def test_job_timeout_cancels_and_records_timeout(tmp_path: Path, designs: dict[str, list[dict[str, float]]]) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path, latency_s=60)
    start = time.time()
    new, left = collect(oracle, store, [Job(designs["CCC"][0], "t")], 0, _retry(max_attempts=1, job_timeout_s=0.05))
    assert time.time() - start < 5
    assert left == []
    assert len(new) == 1
    result = new[0].result
    assert result.status is JobStatus.TIMEOUT
    assert result.error_class is ErrorClass.INFRASTRUCTURE
    job_file = oracle.jobs / f"{result.handle.job_id}.json"
    assert json.loads(job_file.read_text())["cancelled"] is True
    assert oracle.poll([result.handle]) == [JobStatus.CANCELLED]
    assert store.read_inflight() is None


def test_timed_out_jobs_are_retried_as_infrastructure(
    tmp_path: Path, designs: dict[str, list[dict[str, float]]]
) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path, latency_s=60)
    new, left = collect(oracle, store, [Job(designs["CCC"][0], "t")], 0, _retry(max_attempts=2, job_timeout_s=0.03))
    assert left == []
    assert [r.result.status for r in new] == [JobStatus.TIMEOUT, JobStatus.TIMEOUT]
    assert oracle.submissions() == 2
    for r in new:
        assert json.loads((oracle.jobs / f"{r.result.handle.job_id}.json").read_text())["cancelled"] is True


def test_deadline_leaves_jobs_in_flight_then_resume_records_them(
    tmp_path: Path, designs: dict[str, list[dict[str, float]]]
) -> None:
    store = _store(tmp_path)
    slow = _oracle(tmp_path, latency_s=60)
    rows = designs["CCC"][:2] + designs["PPP"][:1]
    jobs = [Job(r, f"t{i}") for i, r in enumerate(rows)]
    start = time.time()
    new, left = collect(slow, store, jobs, 2, _retry(), deadline=time.time() + 0.1)
    assert time.time() - start < 5
    assert new == [] and len(left) == 3
    assert all(j.handle is not None for j in left)
    assert len(store.ledger.records()) == 0
    inflight = store.read_inflight()
    assert inflight is not None
    assert inflight["phase"] == "submitted"
    assert inflight["iteration"] == 2
    saved = [Job.from_json(j) for j in inflight["jobs"]]
    assert [j.handle for j in saved] == [j.handle for j in left]
    assert [j.tag for j in saved] == ["t0", "t1", "t2"]
    assert slow.submissions() == 3

    # the next run: the jobs have finished by now (latency 0 on the same work folder)
    fast = _oracle(tmp_path, latency_s=0)
    new, left = collect(fast, store, saved, 2, _retry(), sleep=_no_sleep)
    assert left == []
    assert fast.submissions() == 3, "re-attached, not re-submitted"
    records = store.ledger.records()
    assert len(records) == len(new) == 3
    assert {r.result.handle.job_id for r in records} == {j.handle.job_id for j in saved if j.handle}
    assert all(r.result.ok for r in records)
    assert store.read_inflight() is None


def test_adopt_reattaches_jobs_submitted_before_a_crash(
    tmp_path: Path, designs: dict[str, list[dict[str, float]]]
) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path)
    rows = designs["CCC"][:2]
    since = time.time()
    store.write_inflight(
        {"iteration": 1, "phase": "submitting", "time": since, "jobs": [Job(r, "x").to_json() for r in rows]}
    )
    handles = oracle.submit(rows)  # the killed process got this far, then died before saving handles
    assert oracle.submissions() == 2
    inflight = store.read_inflight()
    assert inflight is not None and inflight["phase"] == "submitting"
    jobs = [Job.from_json(j) for j in inflight["jobs"]]
    assert all(j.handle is None for j in jobs)
    new, left = collect(oracle, store, jobs, 1, _retry(), since=since, sleep=_no_sleep)
    assert left == []
    assert oracle.submissions() == 2, "adopted, not submitted again"
    assert sorted(r.result.handle.job_id for r in new) == sorted(h.job_id for h in handles)
    assert len(store.ledger.records()) == 2
    assert store.read_inflight() is None


def test_adopt_submits_designs_that_never_arrived(tmp_path: Path, designs: dict[str, list[dict[str, float]]]) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path)
    arrived, lost = designs["CCC"][0], designs["CCC"][1]
    since = time.time()
    (handle,) = oracle.submit([arrived])
    new, left = collect(oracle, store, [Job(arrived, "a"), Job(lost, "l")], 0, _retry(), since=since, sleep=_no_sleep)
    assert left == []
    assert oracle.submissions() == 2, "only the design that never arrived is submitted"
    assert {r.tag: r.result.handle.job_id for r in new}["a"] == handle.job_id


class _NoAdopt:
    """The mock without ``adopt``: an oracle that cannot tell whether a submission arrived."""

    name = "mock"

    def __init__(self, inner: MockOracle, *, idempotent: bool = False) -> None:
        self._inner = inner
        self.space = inner.space
        if idempotent:
            self.idempotent_submit = True

    def submit(self, designs: Any) -> list[Handle]:
        return self._inner.submit(designs)

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        return self._inner.poll(handles)

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        return self._inner.results(handles)

    def cancel(self, handles: Sequence[Handle]) -> None:
        self._inner.cancel(handles)


def test_unknown_submissions_without_adopt_refuse(tmp_path: Path, designs: dict[str, list[dict[str, float]]]) -> None:
    store = _store(tmp_path)
    inner = _oracle(tmp_path)
    oracle = _NoAdopt(inner)
    assert not hasattr(oracle, "adopt")
    jobs = [Job(designs["CCC"][0], "x")]
    with pytest.raises(StateError, match=r"inflight\.json"):
        collect(oracle, store, jobs, 0, _retry(), since=time.time() - 1, sleep=_no_sleep)
    assert inner.submissions() == 0, "nothing is sent while the state is ambiguous"
    assert len(store.ledger.records()) == 0
    # a fresh batch (no `since`) is fine without adopt
    new, _ = collect(oracle, store, jobs, 0, _retry(), sleep=_no_sleep)
    assert len(new) == 1 and inner.submissions() == 1


def test_idempotent_oracle_resends_instead(tmp_path: Path, designs: dict[str, list[dict[str, float]]]) -> None:
    store = _store(tmp_path)
    inner = _oracle(tmp_path)
    oracle = _NoAdopt(inner, idempotent=True)
    new, left = collect(
        oracle,
        store,
        [Job(designs["CCC"][0], "x")],
        0,
        _retry(),
        since=time.time() - 1,
        sleep=_no_sleep,
    )
    assert left == [] and len(new) == 1 and inner.submissions() == 1


class _Flaky(_NoAdopt):
    """Raises `OracleError` from the named calls while ``down`` lasts (a lab server that is down)."""

    def __init__(self, inner: MockOracle, down: int, calls: tuple[str, ...]) -> None:
        super().__init__(inner, idempotent=True)
        self.down, self.calls = down, calls

    def _gate(self, call: str) -> None:
        if call in self.calls and self.down > 0:
            self.down -= 1
            raise OracleError(f"{call}: peer down")

    def submit(self, designs: Any) -> list[Handle]:
        self._gate("submit")
        return super().submit(designs)

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        self._gate("poll")
        return super().poll(handles)

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        self._gate("results")
        return super().results(handles)


@pytest.mark.parametrize("call", ["submit", "poll", "results"])
def test_oracle_errors_are_waited_out_and_nothing_is_lost(
    tmp_path: Path, designs: dict[str, list[dict[str, float]]], call: str
) -> None:
    store = _store(tmp_path)
    inner = _oracle(tmp_path)
    oracle = _Flaky(inner, down=3, calls=(call,))
    waits: list[float] = []
    logged: list[str] = []
    retry = _retry(backoff_s=0.0, poll_interval_s=0.01, max_backoff_s=0.02)
    new, left = collect(
        oracle, store, [Job(r, "t") for r in designs["CCC"][:2]], 0, retry, sleep=waits.append, log=logged.append
    )
    assert left == [] and len(new) == 2 and all(r.result.ok for r in new)
    assert inner.submissions() == 2, "nothing submitted twice"
    assert waits[:3] == [0.01, 0.02, 0.02], "backoff from poll_interval_s (backoff_s is 0), capped at max_backoff_s"
    assert sum("mock unreachable" in m and "2 jobs stay in flight" in m for m in logged) == 3
    assert store.read_inflight() is None


def test_outage_limit_raises_oracle_unavailable_with_jobs_kept(
    tmp_path: Path, designs: dict[str, list[dict[str, float]]]
) -> None:
    store = _store(tmp_path)
    inner = _oracle(tmp_path)
    oracle = _Flaky(inner, down=10**9, calls=("poll",))
    retry = _retry(poll_interval_s=0.01, outage_s=0.1)
    with pytest.raises(OracleUnavailable, match=r"'mock' unreachable for 0\.1 s .*poll: peer down.*kept in .*inflight"):
        collect(oracle, store, [Job(designs["CCC"][0], "t")], 7, retry, sleep=time.sleep)
    inflight = store.read_inflight()
    assert inflight is not None and inflight["phase"] == "submitted" and inflight["jobs"][0]["handle"]
    assert len(store.ledger.records()) == 0 and inner.submissions() == 1


def test_max_backoff_caps_resubmission_waits(tmp_path: Path, designs: dict[str, list[dict[str, float]]]) -> None:
    store = _store(tmp_path)
    oracle = _oracle(tmp_path, failure_rate=1.0, seed=0)
    logged: list[str] = []
    retry = _retry(max_attempts=3, backoff_s=0.05, max_backoff_s=0.06)
    collect(oracle, store, [Job(designs["III"][0], "i")], 0, retry, sleep=_no_sleep, log=logged.append)
    assert [m.rsplit("in ", 1)[1] for m in logged if "re-submitting" in m] == ["0.05 s", "0.06 s"]


class _Refusing(_Flaky):
    """Answers every poll with a refusal that waiting cannot change (e.g. the token was revoked)."""

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        raise OracleRefused("lab refused authentication (HTTP 401)")


def test_a_refusal_stops_at_once_with_jobs_kept(tmp_path: Path, designs: dict[str, list[dict[str, float]]]) -> None:
    store = _store(tmp_path)
    inner = _oracle(tmp_path)
    waits: list[float] = []
    with pytest.raises(OracleRefused, match="HTTP 401"):
        collect(_Refusing(inner, 0, ()), store, [Job(designs["CCC"][0], "t")], 0, _retry(), sleep=waits.append)
    assert waits == [], "no waiting out a refusal"
    inflight = store.read_inflight()
    assert inflight is not None and inflight["jobs"][0]["handle"], "the submitted job is kept for the next run"
    assert inner.submissions() == 1 and len(store.ledger.records()) == 0
