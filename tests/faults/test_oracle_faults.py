"""Oracle faults, injected: each is classified, retried or recorded, and never crashes a campaign.

Job faults come from `FaultyOracle` around the real mock oracle; HTTP faults (500s, lost
replies, garbage, a peer that is down or slow) go through the real http client and the
reference lab server. Every test also checks the two invariants the ledger rests on:
one record per job id, and no job left in ``inflight.json`` once the batch is done.
"""

from __future__ import annotations

import secrets
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.campaign.collect import Job, collect
from agent.campaign.config import RetrySpec, config_from_dict
from agent.campaign.runner import run_campaign
from agent.campaign.store import CampaignStore
from agent.core.errors import InnloopError
from agent.core.materials import load_dataset
from oracles.base import ErrorClass, JobStatus, OracleUnavailable, Result, design_digest
from oracles.http import HttpOracle
from oracles.lab_server import Faults, create_app
from oracles.mock import MockOracle
from oracles.testing.faulty import Fault, FaultyOracle
from oracles.testing.lab import free_port
from tests.oracles.lab import thread_server

TOKEN = secrets.token_hex(16)
INFRA, PHYS = ErrorClass.INFRASTRUCTURE, ErrorClass.PHYSICS


# -- helpers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rows() -> list[dict[str, float]]:
    """Six distinct valid MoS2 designs (the bundled data's first rows)."""

    data = load_dataset("mos2")
    out: dict[str, dict[str, float]] = {}
    for x in data.X:
        row = dict(zip(data.space.names, map(float, x)))
        out.setdefault(design_digest(row), row)
        if len(out) == 6:
            return list(out.values())
    raise AssertionError("too few distinct designs")


def _store(tmp_path: Path) -> CampaignStore:
    store = CampaignStore(tmp_path / "state", "c")
    store.create({}, "fp", "")
    return store


def _mock(tmp_path: Path, latency_s: float = 0.0) -> MockOracle:
    return MockOracle(workdir=tmp_path / "oracle", latency_s=latency_s, noise_eV=0.0, failure_rate=0.0, seed=0)


def _retry(**kw: Any) -> RetrySpec:
    base: dict[str, Any] = {"max_attempts": 3, "backoff_s": 0.02, "poll_interval_s": 0.005, "job_timeout_s": 0.15}
    return RetrySpec(**(base | kw))


class Sleeper:
    """A real (short) sleep that records every wait and can run a hook before it."""

    def __init__(self, hook: Callable[[int, float], None] = lambda _n, _s: None) -> None:
        self.waits: list[float] = []
        self.hook = hook

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.hook(len(self.waits), seconds)
        time.sleep(min(seconds, 0.2))


def _outcomes(results: list[Result]) -> list[tuple[JobStatus, ErrorClass | None]]:
    return [(r.status, r.error_class) for r in results]


def _by_design(store: CampaignStore) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for rec in store.ledger.records():
        out.setdefault(design_digest(rec.result.handle.design), []).append(rec.result)
    return out


def _invariants(store: CampaignStore) -> None:
    ids = [r.result.handle.job_id for r in store.ledger.records()]
    assert len(ids) == len(set(ids)), "one ledger record per job id"
    assert store.read_inflight() is None and not (store.root / "inflight.json").exists()


# -- job faults: one row per kind ------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    fault: Fault
    script: tuple[Fault | None, ...]  # per attempt of the faulty design
    outcomes: tuple[tuple[JobStatus, ErrorClass | None], ...]  # its ledger records, in order
    words: str = ""  # in the first record's message


OK = (JobStatus.COMPLETED, None)
ROWS = [
    Row(Fault.PHYSICS, (Fault.PHYSICS,) * 3, ((JobStatus.FAILED, PHYS),), "did not converge"),
    Row(Fault.WALLTIME, (Fault.WALLTIME,) * 3, ((JobStatus.TIMEOUT, INFRA),) * 3, "exhausted its time limit"),
    Row(Fault.LOST, (Fault.LOST, None), ((JobStatus.ABANDONED, INFRA), OK), "no record of job"),
    Row(Fault.GARBAGE, (Fault.GARBAGE, None), ((JobStatus.FAILED, INFRA), OK), "unreadable"),
    Row(Fault.TRUNCATED, (Fault.TRUNCATED,) * 3, ((JobStatus.FAILED, INFRA),) * 3, "truncated"),
    Row(Fault.STUCK, (Fault.STUCK, None), ((JobStatus.TIMEOUT, INFRA), OK), "cancelled"),
    # a job that completes as it is cancelled: its value is kept, once, and nothing is re-sent
    Row(Fault.LATE, (Fault.LATE,), (OK,)),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.fault.value for r in ROWS])
def test_job_fault_is_classified_retried_or_recorded(tmp_path: Path, rows: list[dict[str, float]], row: Row) -> None:
    store, mock = _store(tmp_path), _mock(tmp_path)
    bad, good = rows[0], rows[1]
    oracle = FaultyOracle(mock, {design_digest(bad): row.script})
    retry = _retry()
    new, left = collect(oracle, store, [Job(bad, "bad"), Job(good, "good")], 0, retry, sleep=Sleeper())
    assert left == []
    mine = _by_design(store)[design_digest(bad)]
    assert _outcomes(mine) == list(row.outcomes)
    assert row.words in (mine[0].message or "")
    assert oracle.attempts[design_digest(bad)] == len(row.outcomes), "submissions counted at the oracle"
    assert _outcomes(_by_design(store)[design_digest(good)]) == [OK]
    starts = [r.handle.submitted_at for r in mine]
    for k in range(1, len(starts)):  # infrastructure faults: re-sent after backoff_s, doubled
        assert starts[k] - starts[k - 1] >= retry.backoff_s * 2 ** (k - 1)
    if row.fault is Fault.STUCK:
        assert mock.poll([mine[0].handle]) == [JobStatus.CANCELLED], "the stuck job was cancelled at the back end"
    assert len(new) == len(store.ledger.records()) == len(row.outcomes) + 1
    _invariants(store)


def test_result_after_the_job_was_given_up_is_not_recorded_twice(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    """The ledger's TIMEOUT is final for that job id; the design's re-submission measures it.

    The late value stays at the oracle (its log): a re-attach to the stale job, as from an
    old inflight.json, logs it and records nothing.
    """
    store = _store(tmp_path)
    oracle = FaultyOracle(_mock(tmp_path), {design_digest(rows[0]): [Fault.LATE]}, late_s=0.3)
    collect(oracle, store, [Job(rows[0], "x")], 0, _retry(job_timeout_s=0.05), sleep=Sleeper())
    first, second = _by_design(store)[design_digest(rows[0])]
    assert _outcomes([first, second]) == [(JobStatus.TIMEOUT, INFRA), OK]
    time.sleep(0.35)
    (late,) = oracle.results([first.handle])
    assert late.ok and late.values == second.values, "the job finished after all"
    logged: list[str] = []
    new, left = collect(oracle, store, [Job(rows[0], "x", handle=first.handle)], 0, _retry(), log=logged.append)
    assert new == [] and left == []
    assert any(first.handle.job_id in m and "not recorded again" in m for m in logged)
    assert [r.result.status for r in store.ledger.records()] == [JobStatus.TIMEOUT, JobStatus.COMPLETED]
    _invariants(store)


# -- peer faults: down, lost replies, a long outage ---------------------------------------------
class _NoAdopt(FaultyOracle):
    """A back end like vasp: no ``adopt``, not idempotent; a submit that raised left nothing."""

    def __init__(self, inner: MockOracle) -> None:
        super().__init__(inner)
        del self.adopt


@pytest.mark.parametrize("adopt", [True, False], ids=["adopt", "no-adopt"])
def test_peer_down_is_ridden_out_with_capped_backoff(tmp_path: Path, rows: list[dict[str, float]], adopt: bool) -> None:
    store, mock = _store(tmp_path), _mock(tmp_path)
    oracle = FaultyOracle(mock) if adopt else _NoAdopt(mock)
    assert callable(getattr(oracle, "adopt", None)) is adopt
    oracle.down = 5
    phases: list[str] = []
    sleeper = Sleeper(lambda _n, _s: phases.append((store.read_inflight() or {}).get("phase", "")))
    retry = _retry(backoff_s=0.01, max_backoff_s=0.04)
    new, left = collect(oracle, store, [Job(r, "t") for r in rows[:3]], 0, retry, sleep=sleeper)
    assert left == [] and [r.result.status for r in new] == [JobStatus.COMPLETED] * 3
    assert sleeper.waits[:5] == [0.01, 0.02, 0.04, 0.04, 0.04], "doubling from backoff_s, capped at max_backoff_s"
    assert oracle.calls["submit"] + oracle.calls["adopt"] == 5 + (2 if adopt else 1), "5 refused, then through"
    assert mock.submissions() == 3, "re-sent, never started twice"
    # designs stay "submitting" only where adopt can tell later what arrived
    assert phases[:5] == ["submitting" if adopt else "submitted"] * 5
    _invariants(store)


def test_outage_mid_batch_keeps_every_job(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    store, mock = _store(tmp_path), _mock(tmp_path, latency_s=0.1)
    oracle = FaultyOracle(mock)
    seen: list[dict[str, Any] | None] = []

    def hook(n: int, _s: float) -> None:
        if n == 1:
            oracle.down = 4  # the peer goes down after the jobs were submitted
        seen.append(store.read_inflight())

    new, left = collect(
        oracle, store, [Job(r, "t") for r in rows[:3]], 0, _retry(job_timeout_s=None), sleep=Sleeper(hook)
    )
    assert left == [] and len(new) == 3 and all(r.result.ok for r in new)
    assert mock.submissions() == 3
    during = [s for s in seen[1:5] if s]
    assert during and all(len(s["jobs"]) == 3 and all(j["handle"] for j in s["jobs"]) for s in during)
    _invariants(store)


def test_lost_submit_reply_is_adopted_not_resent(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    store, mock = _store(tmp_path), _mock(tmp_path)
    oracle = FaultyOracle(mock)
    oracle.lose_reply = 1
    new, left = collect(oracle, store, [Job(r, "t") for r in rows[:2]], 0, _retry(), sleep=Sleeper())
    assert left == [] and all(r.result.ok for r in new)
    assert oracle.calls["submit"] == 1 and oracle.calls["adopt"] == 1
    assert mock.submissions() == 2, "the jobs the lost reply started were adopted"
    _invariants(store)


def test_outage_past_the_limit_stops_cleanly_and_the_next_run_reattaches(
    tmp_path: Path, rows: list[dict[str, float]]
) -> None:
    store, mock = _store(tmp_path), _mock(tmp_path, latency_s=0.05)
    oracle = FaultyOracle(mock)
    jobs = [Job(r, "t") for r in rows[:3]]

    def hook(n: int, _s: float) -> None:
        if n == 1:
            oracle.down = 10**9

    retry = _retry(outage_s=0.3, job_timeout_s=None)
    with pytest.raises(OracleUnavailable) as err:
        collect(oracle, store, jobs, 4, retry, sleep=Sleeper(hook))
    assert isinstance(err.value, InnloopError), "the CLI prints it as one line"
    msg = str(err.value)
    assert "'mock' unreachable for" in msg and "outage_s = 0.3" in msg and "injected fault" in msg
    assert "3 jobs in flight are kept" in msg and "inflight.json" in msg and "innloop run" in msg
    assert len(store.ledger.records()) == 0
    inflight = store.read_inflight()
    assert inflight is not None and inflight["iteration"] == 4 and inflight["phase"] == "submitted"
    saved = [Job.from_json(j) for j in inflight["jobs"]]
    assert len(saved) == 3 and all(j.handle for j in saved)

    oracle.down = 0  # the next run
    new, left = collect(oracle, store, saved, 4, retry, sleep=Sleeper())
    assert left == [] and len(new) == 3 and all(r.result.ok for r in new)
    assert mock.submissions() == 3, "re-attached, not re-submitted"
    _invariants(store)


def test_deadline_during_an_outage_leaves_the_jobs_in_flight(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    store = _store(tmp_path)
    oracle = FaultyOracle(_mock(tmp_path))
    oracle.down = 10**9
    start = time.time()
    new, left = collect(
        oracle, store, [Job(rows[0], "t")], 0, _retry(backoff_s=0.05), deadline=start + 0.3, sleep=Sleeper()
    )
    assert time.time() - start < 2
    assert new == [] and len(left) == 1
    assert store.read_inflight() is not None


# -- HTTP: the real client against the reference lab server ---------------------------------------
def _jobs_at_lab(tmp_path: Path) -> int:
    return len(list((tmp_path / "lab" / "jobs").glob("lab-*.json")))


@pytest.mark.parametrize("fault", ["error_500", "lose_reply", "garbage", "down", "slow"])
def test_http_faults_through_the_real_client(tmp_path: Path, rows: list[dict[str, float]], fault: str) -> None:
    store, mock = _store(tmp_path), _mock(tmp_path)
    back_end = FaultyOracle(mock, slow_s=0.4)
    faults = Faults()
    app = create_app(back_end, TOKEN, state_dir=tmp_path / "lab", faults=faults)
    port = free_port()
    client = HttpOracle(
        url=f"http://127.0.0.1:{port}",
        token=TOKEN,
        workdir=tmp_path / "client",
        retries=0 if fault == "lose_reply" else 1,
        backoff_s=0.01,
        timeout_s=0.2 if fault == "slow" else 5.0,
    )
    n = 1 if fault == "garbage" else 3
    designs = rows[:n]
    with ExitStack() as stack:
        if fault != "down":
            stack.enter_context(thread_server(app, port))
        if fault == "error_500":
            faults.error_500 = 5  # the client's own retry, then collect's backoff
        elif fault == "lose_reply":
            faults.lose_reply = 2  # jobs created, replies lost
        elif fault == "garbage":
            faults.garbage = 2  # the status read and the result read get a proxy's HTML page
        elif fault == "slow":
            back_end.slow = 2  # two calls take longer than the client waits

        def hook(k: int, _s: float) -> None:  # "down": the lab comes up during the third wait
            if fault == "down" and k == 3:
                stack.enter_context(thread_server(app, port))

        retry = _retry(backoff_s=0.02, job_timeout_s=None)
        new, left = collect(client, store, [Job(r, "t") for r in designs], 0, retry, sleep=Sleeper(hook))
    assert left == []
    done = [r.result for r in new if r.result.ok]
    assert sorted(design_digest(r.handle.design) for r in done) == sorted(map(design_digest, designs))
    if fault == "garbage":
        assert _outcomes([r.result for r in new]) == [(JobStatus.FAILED, INFRA), OK]
        assert "malformed reply" in (new[0].result.message or "")
        assert _jobs_at_lab(tmp_path) == 2, "the re-measurement is a deliberate second job"
    else:
        assert len(new) == n and _jobs_at_lab(tmp_path) == n == mock.submissions(), "no job started twice"
    client.close()
    _invariants(store)


# -- whole campaigns ------------------------------------------------------------------------------
CAMPAIGN = """
name = "faults"
seed = 3
targets = [{value = 0.5, hits = 50}]
initial = {random = 8}
loop = {batch_size = 4, samples_per_target = 100}
budget = {iterations = 3}
ray = {enabled = false}
retry = {poll_interval_s = 0.005, backoff_s = 0.01, job_timeout_s = 0.3, outage_s = 0.3, max_failure_rate = 1.0}
[models]
members = 2
surrogate_epochs = 20
surrogate_warm_epochs = 5
generator_epochs = 10
generator_warm_epochs = 3
"""


def _campaign_checks(store: CampaignStore, mock: MockOracle, oracle: FaultyOracle) -> None:
    _invariants(store)
    records = store.ledger.records()
    assert mock.submissions() == len(records), "every job the back end started has exactly one ledger record"
    for digest, results in _by_design(store).items():
        assert len(results) <= 3, "at most max_attempts submissions of a design"
        assert oracle.attempts[digest] == len(results)
        assert all(r.error_class is INFRA for r in results[:-1]), "only infrastructure failures are re-sent"
        # a physics failure may follow infrastructure failures (a timeout under load, then
        # the re-sent job fails on its physics) but is the design's last record: never re-sent
        if any(r.error_class is PHYS for r in results):
            assert results[-1].error_class is PHYS, "a physics failure is final: the design is never sent again"


def test_campaign_survives_every_job_fault(tmp_path: Path) -> None:
    cfg = config_from_dict(tomllib.loads(CAMPAIGN))
    mock = _mock(tmp_path)
    oracle = FaultyOracle(mock, rate=0.5, kinds=list(Fault), seed=3)
    run = run_campaign(cfg, tmp_path / "state", oracle=oracle)
    assert run.reason.startswith("iteration budget reached")
    _campaign_checks(run.store, mock, oracle)
    injected = Counter(job.fault for job in oracle.jobs.values())
    assert len(set(injected) - {None}) >= 5, injected  # seed 3: all seven kinds
    statuses = {(r.result.status, r.result.error_class) for r in run.store.ledger.records()}
    assert {(JobStatus.TIMEOUT, INFRA), (JobStatus.ABANDONED, INFRA), (JobStatus.FAILED, INFRA), OK} <= statuses


def test_campaign_outage_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    cfg = config_from_dict(tomllib.loads(CAMPAIGN))
    mock = _mock(tmp_path)
    oracle = FaultyOracle(mock)

    def down_after_first(_state: Any, _store: CampaignStore) -> None:
        oracle.down = 10**9

    with pytest.raises(OracleUnavailable, match="re-attached by the next `innloop run`"):
        run_campaign(cfg, tmp_path / "state", oracle=oracle, on_iteration=down_after_first)
    store = CampaignStore(tmp_path / "state", "faults")
    inflight = store.read_inflight()
    assert inflight is not None and inflight["iteration"] == 1 and len(inflight["jobs"]) == 4
    assert inflight["phase"] == "submitting", "the mock can adopt: the next run asks it what arrived"
    oracle.down = 0
    run = run_campaign(cfg, tmp_path / "state", oracle=oracle)
    assert run.reason.startswith("iteration budget reached")
    _campaign_checks(run.store, mock, oracle)


def test_faulty_oracle_is_deterministic(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    a = FaultyOracle(_mock(tmp_path), rate=0.7, seed=5)
    b = FaultyOracle(_mock(tmp_path), rate=0.7, seed=5)
    plan = [[a.fault_for(r, k) for k in range(3)] for r in rows]
    assert plan == [[b.fault_for(r, k) for k in range(3)] for r in rows]
    assert any(f is not None for p in plan for f in p) and any(f is None for p in plan for f in p)
    assert (
        FaultyOracle(_mock(tmp_path), {design_digest(rows[0]): [None, Fault.LOST]}).fault_for(rows[0], 1) is Fault.LOST
    )
    assert not hasattr(_NoAdopt(_mock(tmp_path)), "adopt") and not hasattr(a, "idempotent_submit")
