"""P(window) × P(feasible): the acquisition's ranking under ``[[constraints]]`` limits."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm

from agent.design.acquisition import SelectionConfig, choose_batch, log_feasibility, log_window_probability
from agent.models.gp import fit_gp


def test_log_feasibility_is_the_gaussian_probability_of_the_bounds() -> None:
    rng = np.random.default_rng(0)
    U = rng.random((40, 2))
    gp = fit_gp(U, 3.0 * U[:, 1], seed=0)  # a property rising along the second coordinate
    X = np.array([[0.5, 0.1], [0.5, 0.5], [0.5, 0.9]])
    post = gp.posterior(torch.as_tensor(X))
    mu = post.mean.detach().numpy().ravel()
    sd = post.variance.detach().clamp_min(0).sqrt().numpy().ravel()
    want = norm.logcdf((1.5 - mu) / sd)  # max 1.5, no min
    got = log_feasibility([(gp, -np.inf, 1.5)], X)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert got[0] > np.log(0.99) and got[2] < np.log(0.01), "far below the cap feasible, far above not"
    two = log_feasibility([(gp, -np.inf, 1.5), (gp, 0.2, np.inf)], X)  # both sides: the product
    np.testing.assert_allclose(two, got + log_window_probability(gp, X, 0.2, np.inf), rtol=1e-6)
    assert (log_feasibility([(None, -np.inf, 1.5)], X) == 0).all(), "no model yet: no penalty"


def test_hit_slots_prefer_designs_believed_feasible() -> None:
    n = 12
    U = np.column_stack([np.linspace(0, 1, n), np.zeros(n)])
    log_pf = np.log(np.linspace(0.9, 0.6, n))[None, :]  # the window alone prefers the first rows
    feasible = np.log(np.where(np.arange(n) >= 6, 0.95, 0.02))  # but only the last six are feasible
    sel = SelectionConfig(batch_size=4, exploration=0.0, min_distance=0.0)
    plain = choose_batch(log_pf, np.ones(n), U, [4], sel)
    assert sorted(plain.index.tolist()) == [0, 1, 2, 3]
    limited = choose_batch(log_pf, np.ones(n), U, [4], sel, log_feasible=feasible)
    assert sorted(limited.index.tolist()) == [6, 7, 8, 9], "P(window) × P(feasible), likeliest first"
    np.testing.assert_allclose(limited.score, log_pf[0, limited.index] + feasible[limited.index])


def test_exploration_keeps_its_share_among_feasible_candidates() -> None:
    n = 20
    U = np.column_stack([np.linspace(0, 1, n), np.zeros(n)])
    log_pf = np.zeros((1, n))
    sigma = np.linspace(1.0, 0.1, n)  # the most uncertain rows come first
    feasible = np.log(np.where(np.arange(n) >= 10, 1.0, 1e-4))
    sel = SelectionConfig(batch_size=10, exploration=0.3, min_distance=0.0)
    choice = choose_batch(log_pf, sigma, U, [10], sel, log_feasible=feasible)
    assert choice.reason.count("explore") == 3, "the share is the config's, constrained or not"
    assert all(i >= 10 for i in choice.index), "exploring where a hit could not count teaches nothing useful"
