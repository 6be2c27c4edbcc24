"""``[loop] max_sigma`` caps the surrogate's σ of the loop's candidate hits, as ``innloop design`` does.

One tiny campaign on the mock oracle: a seed iteration, then the next iteration's models
and candidates, and `choose` on that same state with and without a cap.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from agent.campaign.batch import Batch
from agent.campaign.config import CampaignConfig, config_from_dict
from agent.campaign.loop import Context, gather, step
from agent.campaign.plan import choose, refine, retrain, sample
from agent.campaign.runner import open_campaign
from agent.campaign.state import CampaignState
from agent.design.funnel import Candidates
from agent.design.trained import TrainedModels
from oracles.mock import MockOracle
from tests.agent.campaign.helpers import TINY_MODELS

CONFIG: dict[str, Any] = {
    "name": "cap",
    "seed": 3,
    "targets": [{"value": 0.5, "window": 0.1, "hits": 20}, {"value": 1.0, "window": 0.1, "hits": 20}],
    "initial": {"random": 24},
    "loop": {"batch_size": 8, "exploration": 0.25, "samples_per_target": 150},
    "budget": {"oracle_calls": 500},
    "models": TINY_MODELS,
    "ray": {"enabled": False},
    "retry": {"poll_interval_s": 0.001, "backoff_s": 0.0},
}


def with_loop(config: CampaignConfig, **loop: Any) -> CampaignConfig:
    return config.model_copy(update={"loop": config.loop.model_copy(update=loop)})


@pytest.fixture(scope="module")
def ready(tmp_path_factory: pytest.TempPathFactory) -> tuple[CampaignState, TrainedModels, Candidates, Context]:
    """The state after the seed iteration, with the next iteration's models and candidates."""
    torch.set_num_threads(1)  # as a campaign runs; module fixtures run before conftest's autouse one
    root = tmp_path_factory.mktemp("cap")
    config = config_from_dict(CONFIG)
    store, state = open_campaign(config, root / "state")
    oracle = MockOracle(workdir=root / "oracle", latency_s=0.0, noise_eV=0.0, failure_rate=0.0, seed=0)
    ctx = Context(oracle=oracle, store=store)
    state, _ = step(state, ctx, None)  # the random seed batch, measured
    given = gather(state, ctx)
    models = retrain(state, given)
    assert models is not None
    cands = refine(state, models, sample(state, models, given), given)
    return state, models, cands, ctx


def _choose(
    ready: tuple[CampaignState, TrainedModels, Candidates, Context], max_sigma: float | None
) -> tuple[Batch, dict]:
    batch, counted = _choose_all(ready, max_sigma)
    return batch, counted.counts


def _choose_all(
    ready: tuple[CampaignState, TrainedModels, Candidates, Context], max_sigma: float | None
) -> tuple[Batch, Candidates]:
    """The batch and every candidate it was chosen from (the believed designs `choose` adds too)."""
    state, models, cands, ctx = ready
    capped = replace(state, config=with_loop(state.config, max_sigma=max_sigma))
    return choose(capped, models, cands, gather(capped, ctx))


def _surrogate_sigma(models: TrainedModels, batch: Batch) -> np.ndarray:
    return models.surrogate.predict(batch.U)[1]


def test_the_cap_changes_the_batch_and_every_hit_is_under_it(
    ready: tuple[CampaignState, TrainedModels, Candidates, Context],
) -> None:
    state, models, _, _ = ready
    free, free_counts = _choose(ready, None)
    assert "over_max_sigma" not in free_counts, "no cap, nothing recorded"
    assert len(free.U) == state.config.loop.batch_size
    exploit = np.array([r == "exploit" for r in free.reason])
    free_sigma = _surrogate_sigma(models, free)
    # a cap below half of the uncapped batch's hits: the rule must bite, yet leave hits to choose
    cap = float(np.median(free_sigma[exploit]))
    assert (free_sigma[exploit] > cap).any()

    capped, considered = _choose_all(ready, cap)
    counts = considered.counts
    sigma = _surrogate_sigma(models, capped)
    hits = np.array([r == "exploit" for r in capped.reason])
    assert hits.any(), "candidates under the cap remain hits"
    assert (sigma[hits] <= cap + 1e-6).all(), (sigma[hits], cap)
    assert len(capped.U) == len(free.U), "the cap moves slots, it never shrinks the batch"
    assert {tuple(u) for u in capped.U} != {tuple(u) for u in free.U}
    all_sigma = models.surrogate.predict(considered.U)[1]
    assert 0 < counts["over_max_sigma"] <= int((all_sigma > cap).sum())

    again, _ = _choose(ready, cap)  # deterministic: the same state chooses the same batch
    np.testing.assert_array_equal(again.U, capped.U)
    assert again.reason == capped.reason


def test_a_tiny_cap_turns_the_batch_to_exploration(
    ready: tuple[CampaignState, TrainedModels, Candidates, Context],
) -> None:
    state, models, _, _ = ready
    # only a unanimous ensemble meets it (σ is 0 where every member predicts a metal)
    cap = 1e-6
    free, _ = _choose(ready, None)
    capped, considered = _choose_all(ready, cap)
    counts = considered.counts
    free_hits = np.array([r == "exploit" for r in free.reason])
    hits = np.array([r == "exploit" for r in capped.reason])
    assert (_surrogate_sigma(models, free)[free_hits] > cap).any()
    assert (_surrogate_sigma(models, capped)[hits] <= cap).all()
    assert len(capped.U) == len(free.U) == state.config.loop.batch_size
    assert {tuple(u) for u in capped.U} != {tuple(u) for u in free.U}
    all_sigma = models.surrogate.predict(considered.U)[1]
    assert counts["over_max_sigma"] == int((all_sigma > cap).sum())  # every candidate is fresh after the seed batch


def test_a_capped_step_records_the_count_and_measures_no_uncertain_hit(
    ready: tuple[CampaignState, TrainedModels, Candidates, Context],
) -> None:
    """Last in this file: it commits the next iteration into the fixture's campaign folder."""
    state, models, _, ctx = ready
    cap = 0.02
    capped = replace(state, config=with_loop(state.config, max_sigma=cap))
    step(capped, ctx, models)
    i = state.iteration
    metrics = ctx.store.verify_iteration(i)
    assert metrics["candidates"]["over_max_sigma"] > 0
    batch = Batch.read(ctx.store.iteration_file(i, "batch.csv"), state)
    surrogate = TrainedModels.load(ctx.store.iteration_dir(i), state.config.models.generator)
    assert surrogate is not None
    hits = np.array([r == "exploit" for r in batch.reason])
    assert hits.any() and (surrogate.surrogate.predict(batch.U)[1][hits] <= cap + 1e-6).all()
