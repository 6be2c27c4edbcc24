"""The transfer model: the fitted map, the GP's prior mean, and the source's falling weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.models.gp import fit_gp
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from agent.models.transfer import REPLAY_CAP, ScaleMap, TransferSource, fit_scale_map, replay_rows, source_signed


def truth(U: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.6 * U[:, 0] - 0.8 * U[:, 1] + 0.3)


def test_the_map_is_the_identity_without_data_and_finds_offset_and_scale() -> None:
    assert fit_scale_map(np.zeros(0), np.zeros(0), 1.0) == ScaleMap(0.0, 1.0, 0)
    rng = np.random.default_rng(0)
    s = rng.uniform(-1.0, 2.0, 40)
    y = np.maximum(0.0, 0.45 + 0.9 * s)  # metals where the mapped value is below 0: the hinge
    m = fit_scale_map(s, y, spread=1.0)
    assert m.offset == pytest.approx(0.45, abs=0.02) and m.scale == pytest.approx(0.9, abs=0.02)
    assert m.fitted_on == 40
    np.testing.assert_allclose(m(s), y, atol=0.05)


def test_a_few_results_give_a_map_near_the_prior() -> None:
    m = fit_scale_map(np.array([0.2]), np.array([0.3]), spread=1.0)  # one row cannot decide two numbers
    assert 0.8 < m.scale < 1.1 and 0.0 < m.offset < 0.15


def test_replayed_source_rows_fall_as_the_targets_data_grow() -> None:
    counts = [replay_rows(n, 8000) for n in (0, 8, 50, 200, 1000)]
    assert counts[0] == REPLAY_CAP and counts == sorted(counts, reverse=True) and counts[-1] < counts[0] / 10
    assert replay_rows(0, 30) == 30


def source_of(U: np.ndarray, y: np.ndarray) -> TransferSource:
    model = SurrogateEnsemble(U.shape[1], EnsembleConfig(members=2, hidden=32, layers=2, epochs=60, seed=0))
    model.fit(U, y, warm_start=False)
    return TransferSource.of("test source", U, y, model)


def test_replay_is_a_nested_subset_on_the_targets_scale() -> None:
    rng = np.random.default_rng(1)
    U = rng.uniform(size=(300, 2))
    source = source_of(U, truth(U))
    m = ScaleMap(0.5, 1.0, 10)
    few_U, _ = source.replay(m, 200, seed=3)
    many_U, many_y = source.replay(m, 10, seed=3)
    assert len(few_U) < len(many_U) and np.array_equal(few_U, many_U[: len(few_U)])
    np.testing.assert_allclose(many_y, m(source_signed(source.model, many_U)), atol=1e-6)  # the mapped source
    record = source.record(m, 10)
    assert record["source"] == "test source" and record["rows"] == 300 and record["offset"] == 0.5
    assert record["replay"] == len(many_U)


def test_the_prior_guides_the_gp_only_until_the_targets_data_take_over() -> None:
    """A right source helps where the target has no data; a wrong one is overruled where it has."""
    rng = np.random.default_rng(2)
    U_src = rng.uniform(size=(400, 2))
    source = source_of(U_src, truth(U_src))
    test = rng.uniform(size=(200, 2))
    right = source.prior(ScaleMap(0.0, 1.0, 0))

    def mae(U: np.ndarray, y: np.ndarray, prior: object) -> float:
        gp = fit_gp(U, y, prior=prior)  # type: ignore[arg-type]
        with torch.no_grad():
            mean = gp.posterior(torch.as_tensor(test)).mean.squeeze(-1).numpy()
        return float(np.abs(mean - truth(test)).mean())

    few = rng.uniform(size=(6, 2))
    assert mae(few, truth(few), right) < 0.5 * mae(few, truth(few), None)

    def wrong(X: torch.Tensor) -> torch.Tensor:  # a source that says the opposite
        return 2.0 - torch.as_tensor(truth(X.reshape(-1, 2).numpy()), dtype=X.dtype).reshape(X.shape[:-1])

    many = rng.uniform(size=(150, 2))
    own, misled = mae(many, truth(many), None), mae(many, truth(many), wrong)
    assert misled < 0.05 and misled < own + 0.02
