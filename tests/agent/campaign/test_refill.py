"""Asynchronous mode (`agent.campaign.refill`): refills keep the oracle busy without losing,
repeating or crowding a design, within ``max_in_flight`` at every moment, and drain at the end.

One campaign on the mock with heavy-tailed run times and infrastructure failures, watched
from the oracle (how many of its jobs were live at once) and from the campaign's folder
after every iteration (the jobs in flight, each batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.campaign import plan
from agent.campaign.batch import Batch
from agent.campaign.config import config_from_dict
from agent.campaign.journal import in_flight
from agent.campaign.plan import PlanInputs
from agent.campaign.refill import chosen_in, enough, slots
from agent.campaign.runner import CampaignRun, campaign_status, open_campaign, run_campaign
from agent.campaign.state import CampaignState
from agent.campaign.store import CampaignStore
from agent.core.errors import ConfigError
from agent.report.tables import calibration_points
from oracles.base import design_digest
from oracles.testing.counting import CountingMock
from tests.agent.campaign.helpers import TINY_MODELS

CAP, REFILL = 6, 2
CONFIG: dict[str, Any] = {
    "name": "async",
    "seed": 2,
    "targets": [{"value": 1.0, "window": 0.1, "hits": 500}],
    "initial": {"random": 8},
    "loop": {"mode": "async", "batch_size": 4, "max_in_flight": CAP, "refill": REFILL, "samples_per_target": 150},
    "budget": {"oracle_calls": 40},
    "models": TINY_MODELS,
    "ray": {"enabled": False},
    "retry": {"poll_interval_s": 0.01, "backoff_s": 0.05},
}


def watched(workdir: Path) -> CountingMock:
    """The mock with heavy-tailed run times and failures, counting its jobs live at once."""
    return CountingMock(workdir=workdir, latency_s=0.05, latency_sigma=1.2, failure_rate=0.2, seed=1)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[CampaignRun, CountingMock, list[list[dict[str, Any]]]]:
    """The campaign run to its call budget; per iteration, the designs in flight after it
    (and `PENDING`: what each choice was given as pending)."""
    root = tmp_path_factory.mktemp("async")
    oracle = watched(root / "oracle")
    after: list[list[dict[str, Any]]] = []

    def watch(_state: CampaignState, store: CampaignStore) -> None:
        after.append([j.design for j in in_flight(store)[0]])

    def choose(state: CampaignState, models: Any, cands: Any, given: PlanInputs) -> Any:
        PENDING[state.iteration] = given.pending
        return real_choose(state, models, cands, given)

    real_choose = plan.choose
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan, "choose", choose)
        run = run_campaign(config_from_dict(CONFIG), root / "state", oracle=oracle, on_iteration=watch)
    return run, oracle, after


PENDING: dict[int, np.ndarray | None] = {}


def test_async_keeps_jobs_in_flight_between_refills_within_the_cap(ran: Any) -> None:
    run, oracle, after = ran
    assert oracle.most == CAP, "the slots were filled, never overfilled"
    assert sum(bool(a) for a in after) >= len(after) - 1 >= 5, "jobs stayed at the oracle across refills"
    assert all(len(a) <= CAP for a in after)
    tags = [r.tag for r in run.state.records]
    late = [r for r in run.state.records if (c := chosen_in(r.tag)) is not None and c < r.iteration]
    assert late, "results come back in later refills than the one that chose them"
    assert all(t.startswith("seed") or chosen_in(t) is not None for t in tags)


def test_every_design_is_paid_once_per_attempt_and_drained(ran: Any) -> None:
    run, oracle, _ = ran
    store = run.store
    assert oracle.submissions() == len(run.state.records) >= CONFIG["budget"]["oracle_calls"]
    assert not in_flight(store)[0], "the jobs out when the budget ran out were collected"
    assert campaign_status(store.root.parent, "async")["done"]
    assert any(not r.result.ok for r in run.state.records), "failures happened and were recorded"
    assert "oracle-call budget" in run.reason


def test_a_refill_never_chooses_near_a_design_in_flight(ran: Any) -> None:
    run, _, after = ran
    store, state = run.store, run.state
    d = CONFIG.get("loop", {}).get("min_distance", 0.1)
    chose = 0
    for i in range(1, state.iteration):
        batch = Batch.read(store.iteration_dir(i) / "batch.csv", state)
        pending = state.space.to_unit(state.space.from_rows(after[i - 1])) if after[i - 1] else np.zeros((0, 7))
        assert len(batch.U) <= max(0, CAP - len(after[i - 1])), "a refill fills free slots only (re-sends hold theirs)"
        if len(batch.U):
            given = PENDING[i]
            assert given is not None and sorted(map(tuple, given)) == sorted(map(tuple, pending)), (
                f"iteration {i} chose without every design in flight as pending"
            )
        if len(batch.U) and len(pending):
            gap = np.linalg.norm(batch.U[:, None, :] - pending[None, :, :], axis=-1).min()
            assert gap >= d - 1e-9, f"iteration {i} chose a near-duplicate of a design in flight"
            chose += 1
    assert chose >= 3, "refills chose designs while others were in flight"
    assert {design_digest(r.result.handle.design) for r in state.records} >= {
        design_digest(row) for a in after for row in a
    }


def test_a_refill_waits_for_its_results_and_scores_their_forecasts(ran: Any) -> None:
    run, _, _ = ran
    maes = [m.get("batch_mae") for m in run.state.history[2:]]
    assert any(v is not None for v in maes), "results of earlier refills' designs are scored against their forecasts"
    assert all(m["new_results"] >= REFILL for m in run.state.history[:-3]), "each refill waited for its results"


def test_max_in_flight_caps_a_batch_too(tmp_path: Path) -> None:
    oracle = watched(tmp_path / "oracle")
    loop = {"batch_size": 5, "max_in_flight": 2, "samples_per_target": 100}
    config = config_from_dict(CONFIG | {"loop": loop, "initial": {"random": 5}, "budget": {"iterations": 2}})
    run = run_campaign(config, tmp_path / "state", oracle=oracle)
    assert oracle.most == 2 and run.state.calls >= 10 and oracle.submissions() == run.state.calls
    assert not in_flight(run.store)[0], "a batch still waits for all of its results"


def test_slots_and_enough_follow_the_jobs_in_flight(tmp_path: Path) -> None:
    _, state = open_campaign(config_from_dict(CONFIG), tmp_path / "state")
    assert slots(state, []) is None, "the first batch is the initial one"
    assert enough(state) == REFILL and enough(state, drain=True) is None and slots(state, [], drain=True) == 0
    batch_mode = config_from_dict(CONFIG | {"loop": {"batch_size": 4}})
    _, plain = open_campaign(batch_mode, tmp_path / "plain")
    assert slots(plain, []) is None and enough(plain) is None


def test_loop_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="refill applies to mode"):
        config_from_dict(CONFIG | {"loop": {"refill": 2}})
    with pytest.raises(ConfigError, match=r"refill \(8\) cannot exceed max_in_flight \(4\)"):
        config_from_dict(CONFIG | {"loop": {"mode": "async", "max_in_flight": 4, "refill": 8}})
    loop = config_from_dict(CONFIG | {"loop": {"mode": "async", "batch_size": 10}}).loop
    assert (loop.in_flight_cap, loop.refill_size) == (20, 10)
    loop = config_from_dict(CONFIG | {"loop": {"mode": "async", "batch_size": 10, "max_in_flight": 8}}).loop
    assert (loop.in_flight_cap, loop.refill_size) == (8, 4)
    assert config_from_dict(CONFIG | {"loop": {"batch_size": 10}}).loop.in_flight_cap is None


def test_networks_are_refitted_once_a_batch_of_results_is_in(ran: Any) -> None:
    run, _, _ = ran
    history, batch = run.state.history, CONFIG["loop"]["batch_size"]
    reused = [i for i, m in enumerate(history) if m["fit"].get("reused")]
    full = [i for i, m in enumerate(history) if "surrogate_s" in m["fit"]]
    assert reused and len(full) >= 2, "refills between full refits kept the networks"
    for i in reused:
        since = history[i - 1]["completed"] - history[i]["fit"]["n_observed"]
        assert 0 <= since < batch, f"iteration {i} kept networks {since} results old"


def test_the_report_pairs_late_results_with_their_forecasts(ran: Any) -> None:
    run, _, _ = ran
    store, state = run.store, run.state
    batches = [(i, pd.read_csv(store.iteration_dir(i) / "batch.csv")) for i in range(state.iteration)]
    forecast = {
        (i, design_digest(row)): p
        for i, frame in batches
        if len(frame)
        for row, p in zip(state.space.to_rows(state.space.from_frame(frame)), frame["pred"])
    }
    wanted = [
        r
        for r in state.records
        if r.result.ok
        and np.isfinite(forecast.get((chosen_in(r.tag) or -1, design_digest(r.result.handle.design)), np.nan))
    ]
    points = calibration_points(batches, state.records, state.space, state.target_name)
    assert len(points) == len(wanted) and any(chosen_in(r.tag) != r.iteration for r in wanted)


def test_a_campaign_that_has_its_hits_collects_the_jobs_still_out(tmp_path: Path) -> None:
    oracle = CountingMock(workdir=tmp_path / "oracle", latency_s=0.05, latency_sigma=1.5, seed=3)
    config = CONFIG | {"targets": [{"value": 0.0, "window": 0.1, "hits": 3}], "initial": {"random": 12}}
    run = run_campaign(config_from_dict(config), tmp_path / "state", oracle=oracle)
    assert run.reason.startswith("every target has its diverse hits")
    assert not in_flight(run.store)[0] and oracle.submissions() == run.state.calls > 3
    assert run.state.history[-1]["candidates"] == {"drain": 1}, "the last iteration chose nothing"
