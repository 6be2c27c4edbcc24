"""Planning (`agent.campaign.plan`) on its own: states built in memory, a fake sampler, no
store, no oracle. State and models in, models and batch out; nothing given is changed.

The measured values come from a smooth made-up function of the unit box, so a few dozen
observations train a surrogate that ranks candidates (tiny epochs keep it fast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from agent.campaign.batch import Batch
from agent.campaign.config import CampaignConfig, config_from_dict
from agent.campaign.ledger import LedgerRecord
from agent.campaign.plan import (
    MIN_TRAIN,
    PlanInputs,
    choose,
    first_batch,
    refine,
    retrain,
    sample,
    with_acquisition_model,
)
from agent.campaign.state import CampaignState, measured_unit, nearest_distance
from agent.core.materials import get_material
from agent.design.trained import TrainedModels
from oracles.base import Handle, JobStatus, Result

SPACE = get_material("mos2").space
RAW: dict[str, Any] = {
    "name": "plan",
    "seed": 4,
    "targets": [{"value": 0.5, "window": 0.1, "hits": 20}, {"value": 1.0, "window": 0.1, "hits": 20}],
    "initial": {"random": 6},
    "loop": {"batch_size": 5, "exploration": 0.2, "samples_per_target": 40},
    "models": {
        "members": 2,
        "surrogate_epochs": 20,
        "surrogate_warm_epochs": 5,
        "generator_epochs": 3,
        "generator_warm_epochs": 1,
        "acquisition": "ensemble",
    },
    "ray": {"enabled": False},
}


def config(**update: Any) -> CampaignConfig:
    return config_from_dict(RAW | update)


def with_loop(state: CampaignState, **loop: Any) -> CampaignState:
    cfg = state.config
    return replace(state, config=cfg.model_copy(update={"loop": cfg.loop.model_copy(update=loop)}))


def gap(U: np.ndarray) -> np.ndarray:
    """A made-up property: zero over a corner of the box, rising smoothly elsewhere."""
    return np.maximum(0.0, 2.4 * U.mean(axis=1) - 0.6)


def measured(U: np.ndarray, iteration: int, first_seq: int = 0) -> tuple[LedgerRecord, ...]:
    """Completed oracle results for the unit-box designs ``U (n, d)``."""
    out = []
    for k, (x, g) in enumerate(zip(SPACE.from_unit(U), gap(U))):
        design = dict(zip(SPACE.names, map(float, x)))
        result = Result(Handle("fake", f"j{first_seq + k}", design, submitted_at=1.0), JobStatus.COMPLETED, {"gap": g})
        out.append(LedgerRecord(first_seq + k, iteration, 1.0, result, "seed"))
    return tuple(out)


def seeded(n: int = 30, cfg: CampaignConfig | None = None) -> CampaignState:
    """The state after a first batch of ``n`` random designs was measured."""
    U = SPACE.sample_unit(np.random.default_rng(11), n)
    return CampaignState(cfg or config(), SPACE, "gap", iteration=1, records=measured(U, 0))


class FakeSampler:
    """Seeded uniform draws instead of the generator's; records every job it was given."""

    def __init__(self) -> None:
        self.jobs: list[list[tuple[float, int, int]]] = []

    def sample(self, generator: Any, jobs: Sequence[tuple[float, int, int]]) -> list[np.ndarray]:
        self.jobs.append(list(jobs))
        return [np.random.default_rng(seed).random((n, SPACE.dim)) for _, n, seed in jobs]

    def close(self) -> None:
        """Nothing to release."""


def plan_all(state: CampaignState, given: PlanInputs) -> tuple[TrainedModels | None, Batch]:
    models = retrain(state, given)
    cands = refine(state, models, sample(state, models, given), given)
    return models, choose(state, models, cands, given)[0]


@pytest.fixture(scope="module")
def trained() -> tuple[CampaignState, TrainedModels]:
    torch.set_num_threads(1)  # module fixtures run before conftest's autouse one
    state = seeded()
    models = retrain(state, PlanInputs())
    assert models is not None
    return state, models


def test_the_first_batch_is_random_and_seeded() -> None:
    state = CampaignState(config(), SPACE, "gap")
    sampler = FakeSampler()
    given = PlanInputs(sampler=sampler)
    assert first_batch(state) and retrain(state, given) is None
    samples = sample(state, None, given)
    assert sampler.jobs == [] and [len(s) for s in samples] == [0, 0], "no generator: nothing drawn"
    cands = refine(state, None, samples, given)
    assert (cands.source == -1).all() and cands.counts["uniform"] == 40 and cands.mean is None
    batch, counted = choose(state, None, cands, given)
    assert counted is cands
    assert len(batch.U) == 6 and batch.reason == ["seed"] * 6 and (batch.target == -1).all()
    assert SPACE.valid_mask(batch.physical(state)).all()
    np.testing.assert_array_equal(plan_all(state, given)[1].U, batch.U)
    other = CampaignState(config(seed=5), SPACE, "gap")
    assert not np.array_equal(plan_all(other, PlanInputs())[1].U, batch.U)


def test_the_initial_designs_lead_the_first_batch_only() -> None:
    X = SPACE.from_unit(SPACE.sample_unit(np.random.default_rng(2), 3))
    state = CampaignState(config(), SPACE, "gap")
    given = PlanInputs(designs=X)
    batch = plan_all(state, given)[1]
    assert batch.X is not None and len(batch.X) == 3 + 6
    np.testing.assert_array_equal(batch.X[:3], X)
    later = CampaignState(config(), SPACE, "gap", iteration=1, records=measured(SPACE.to_unit(X), 0))
    assert not first_batch(later)
    again = plan_all(later, given)[1]
    assert again.X is None and len(again.U) == 5 and set(again.reason) == {"seed"}, "too little data: random"


def test_random_until_enough_observations() -> None:
    few = seeded(MIN_TRAIN - 1)
    assert retrain(few, PlanInputs()) is None
    _, batch = plan_all(few, PlanInputs())
    assert len(batch.U) == 5 and set(batch.reason) == {"seed"}


def test_a_batch_after_training(trained: tuple[CampaignState, TrainedModels]) -> None:
    state, models = trained
    assert models.fit["n_train"] == 30 and models.generator is not None and not models.fit["warm"]
    sampler = FakeSampler()
    given = PlanInputs(previous=models, sampler=sampler)
    samples = sample(state, models, given)
    assert [(t, n) for t, n, _ in sampler.jobs[0]] == [(0.5, 40), (1.0, 40)]
    cands = refine(state, models, samples, given)
    assert set(np.unique(cands.source)) == {-1, 0, 1}
    assert cands.counts["candidates"] + cands.counts["invalid"] == 3 * 40
    pending = cands.U[:4]
    batch, _ = choose(state, models, cands, replace(given, pending=pending))
    assert len(batch.U) == 5 and set(batch.reason) <= {"exploit", "explore"} and (batch.target >= 0).all()
    assert np.isfinite(batch.pred).all() and (batch.std >= 0).all()
    assert nearest_distance(batch.U, pending).min() >= state.config.loop.min_distance - 1e-9
    assert nearest_distance(batch.U, measured_unit(state)).min() > 1e-9, "nothing measured is proposed again"
    cfg = state.config
    budget = replace(
        state, config=cfg.model_copy(update={"budget": cfg.budget.model_copy(update={"oracle_calls": 32})})
    )
    assert len(choose(budget, models, cands, given)[0].U) == 2, "the call budget caps the batch"


def test_planning_changes_nothing_it_is_given(trained: tuple[CampaignState, TrainedModels]) -> None:
    state, models = trained
    assert models.generator is not None
    weights = {k: v.clone() for k, v in models.surrogate.state_dict().items()}
    gen_weights = {k: v.clone() for k, v in models.generator.state_dict().items()}
    more = SPACE.sample_unit(np.random.default_rng(12), 10)
    grown = replace(state, iteration=2, records=state.records + measured(more, 1, len(state.records)))
    given = PlanInputs(previous=models, sampler=FakeSampler())
    warm = retrain(grown, given)
    assert warm is not None and warm.fit["warm"] and warm.fit["n_train"] == 40
    assert warm.surrogate is not models.surrogate and warm.generator is not models.generator
    for k, v in models.surrogate.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)
    for k, v in models.generator.state_dict().items():
        torch.testing.assert_close(v, gen_weights[k], rtol=0, atol=0)
    assert any(not torch.equal(v, weights[k]) for k, v in warm.surrogate.state_dict().items()), "it did train"

    cands = refine(grown, warm, sample(grown, warm, given), given)
    counts = dict(cands.counts)
    _, counted = choose(with_loop(grown, max_sigma=1e-6), warm, cands, given)
    assert cands.counts == counts and counted.counts["over_max_sigma"] > 0

    cfg = grown.config
    gp = replace(grown, config=cfg.model_copy(update={"models": cfg.models.model_copy(update={"acquisition": "gp"})}))
    with_gp = with_acquisition_model(gp, warm)
    assert with_gp is not None and with_gp is not warm and with_gp.scorer is with_gp.acquisition
    assert warm.acquisition is None and with_gp.surrogate is warm.surrogate
    assert with_acquisition_model(grown, warm) is warm, "an ensemble campaign fits no GP"


def test_a_pool_oracle_is_planned_from_its_rows(trained: tuple[CampaignState, TrainedModels]) -> None:
    state, _ = trained
    known = measured_unit(state)[:5]
    pool = np.vstack([SPACE.sample_unit(np.random.default_rng(3), 200), known])
    sampler = FakeSampler()
    given = PlanInputs(pool=pool, sampler=sampler)
    models = retrain(state, given)
    assert models is not None and models.generator is None, "a pool oracle cannot measure generated designs"
    samples = sample(state, models, given)
    assert sampler.jobs == [] and all(len(s) == 0 for s in samples)
    cands = refine(state, models, samples, given)
    assert cands.counts == {"pool": 205} and (cands.source == -1).all()
    np.testing.assert_array_equal(cands.U, pool)
    batch, _ = choose(state, models, cands, given)
    assert len(batch.U) == 5 and nearest_distance(batch.U, pool).max() == 0, "every design is a pool row"
    assert nearest_distance(batch.U, known).min() > 1e-9


def test_max_sigma_keeps_uncertain_designs_from_the_hits(trained: tuple[CampaignState, TrainedModels]) -> None:
    state, models = trained
    given = PlanInputs(sampler=FakeSampler())
    cands = refine(state, models, sample(state, models, given), given)
    free, plain = choose(state, models, cands, given)
    assert "over_max_sigma" not in plain.counts
    sigma = models.surrogate.predict(plain.U)[1]  # every candidate considered: the believed designs too
    cap = float(np.quantile(sigma, 0.3))
    batch, counted = choose(with_loop(state, max_sigma=cap), models, cands, given)
    assert counted.counts["over_max_sigma"] == int((sigma > cap).sum())
    hits = np.array([r == "exploit" for r in batch.reason])
    assert len(batch.U) == len(free.U)
    assert (models.surrogate.predict(batch.U[hits])[1] <= cap + 1e-6).all()


def test_the_same_state_plans_the_same_batch() -> None:
    state = seeded(20)
    a_models, a = plan_all(state, PlanInputs())  # the generator's own draws (`LocalSampler`)
    b_models, b = plan_all(state, PlanInputs())
    assert a_models is not None and b_models is not None and a_models is not b_models
    np.testing.assert_array_equal(a.U, b.U)
    assert a.reason == b.reason and list(a.target) == list(b.target)
    _, c = plan_all(seeded(20, config(seed=9)), PlanInputs())
    assert not np.array_equal(a.U, c.U), "another seed plans another batch"
