"""The loop's effects around planning (`agent.campaign.loop`): what a killed run left, what
planning is handed from the world, and the clock, which only the step reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.campaign.batch import Batch
from agent.campaign.collect import Job
from agent.campaign.config import CampaignConfig, config_from_dict
from agent.campaign.ledger import LedgerRecord
from agent.campaign.loop import Context, Leftovers, gather, update, write_csv
from agent.campaign.runner import open_campaign
from agent.campaign.state import CampaignState
from agent.core.materials import get_material
from oracles.base import Handle, JobStatus, Result
from oracles.mock import MockOracle
from oracles.table import TableOracle

SPACE = get_material("mos2").space
RAW: dict[str, Any] = {
    "name": "loop",
    "targets": [{"value": 1.0, "window": 0.1, "hits": 5}],
    "initial": {"random": 4},
    "ray": {"enabled": False},
}


def config(**update: Any) -> CampaignConfig:
    return config_from_dict(RAW | update)


def design(u: np.ndarray) -> dict[str, float]:
    return dict(zip(SPACE.names, map(float, SPACE.from_unit(u[None])[0])))


def record(seq: int, u: np.ndarray, iteration: int, value: float) -> LedgerRecord:
    result = Result(Handle("mock", f"j{seq}", design(u), submitted_at=1.0), JobStatus.COMPLETED, {"gap": value})
    return LedgerRecord(seq, iteration, 1.0, result, "seed")


def batch_of(U: np.ndarray, pred: np.ndarray) -> Batch:
    k = len(U)
    return Batch(U, np.zeros(k, dtype=int), ["exploit"] * k, pred, np.full(k, 0.05), np.zeros(k))


def test_update_takes_the_clock_from_its_caller() -> None:
    U = SPACE.sample_unit(np.random.default_rng(0), 3)
    state = CampaignState(config(), SPACE, "gap", elapsed_s=10.0)
    new = [record(i, u, 0, v) for i, (u, v) in enumerate(zip(U, [0.95, 1.3, 1.02]))]
    seconds = {"choose": 0.5}
    nxt = update(state, batch_of(U, np.array([1.0, 1.0, 1.0])), new, seconds, run_started=100.0, now=130.0)
    m = nxt.history[-1]
    assert m["time"] == 130.0 and m["elapsed_s"] == 40.0, "no clock of its own: the caller's now"
    assert m["oracle_calls"] == 3 and m["hits"] == [2] and m["new_hits"] == [2]
    assert np.isclose(m["batch_mae"], (0.05 + 0.3 + 0.02) / 3) and np.isclose(m["batch_coverage_2sigma"], 2 / 3)
    assert m["seconds"] is seconds and nxt.calls == 3 and state.calls == 0


def test_leftovers_of_a_killed_iteration(tmp_path: Path) -> None:
    store, state = open_campaign(config(), tmp_path)
    nothing = Leftovers.read(store, state)
    assert nothing == Leftovers(), "a fresh iteration: nothing to resume"
    assert nothing.pending(state).shape == (0, SPACE.dim)

    U = SPACE.sample_unit(np.random.default_rng(1), 4)
    batch = batch_of(U, np.full(4, 1.0))
    write_csv(store.iteration_dir(0) / "batch.csv", batch.frame(state))
    flying = Job(design(U[1]), "t0/exploit", handle=Handle("mock", "j7", design(U[1]), submitted_at=4.0))
    store.write_inflight({"iteration": 0, "phase": "submitting", "time": 5.0, "jobs": [flying.to_json()]})
    state = state.with_records([record(0, U[2], 0, 1.0)])  # one design already has its result
    left = Leftovers.read(store, state)
    assert left.batch is not None and left.models is None and left.since == 5.0
    np.testing.assert_array_equal(left.batch.physical(state), SPACE.from_unit(U))
    np.testing.assert_allclose(left.pending(state), U[1:2])
    jobs = left.jobs(state, left.batch)
    assert [j.handle is not None for j in jobs] == [True, False, False], "re-attach first, then what is left"
    assert [j.design for j in jobs[1:]] == [design(U[0]), design(U[3])], "nothing measured or in flight again"


def test_gather_hands_planning_what_it_needs(tmp_path: Path) -> None:
    X = SPACE.from_unit(SPACE.sample_unit(np.random.default_rng(2), 3))
    SPACE.to_frame(X).to_csv(tmp_path / "designs.csv", index=False, float_format="%.17g")
    cfg = config(initial={"random": 4, "designs": str(tmp_path / "designs.csv")})
    store, state = open_campaign(cfg, tmp_path / "state")
    mock = Context(oracle=MockOracle(workdir=tmp_path / "oracle", latency_s=0.0), store=store)
    given = gather(state, mock)
    assert given.pool is None and given.sampler is mock.sampler and given.previous is None
    assert given.designs is not None and np.array_equal(given.designs, X)
    later = state.with_records([record(0, SPACE.to_unit(X[:1])[0], 0, 1.0)])
    assert gather(later, mock).designs is None, "the initial designs are the first batch's only"

    table = TableOracle()
    given = gather(state, Context(oracle=table, store=store))
    rows = SPACE.to_unit(SPACE.from_frame(table.pool()))
    assert given.pool is not None and np.array_equal(given.pool, rows)
