"""Acquisition: slot allocation, BoTorch window probability on real models, batch rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import norm

from agent.design.acquisition import SelectionConfig, allocate, choose_batch, log_window_probability, posterior_std
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble

# -- allocate ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "missing", "expected"),
    [
        (8, [30, 10], [6, 2]),
        (10, [1, 1, 2], [3, 2, 5]),  # raw 2.5, 2.5, 5: the tie on .5 goes to the earlier target
        (3, [5, 5, 5], [1, 1, 1]),
        (2, [5, 5, 5], [1, 1, 0]),  # equal remainders: earlier targets first
        (5, [0, 7, 0], [0, 5, 0]),
        (4, [3, -2, 1], [3, 0, 1]),  # negative need counts as none
        (7, [0, 0], [0, 0]),
        (0, [4, 4], [0, 0]),
        (5, [1, 100], [0, 5]),  # raw 0.0495 / 4.95: largest remainder wins the last slot
    ],
)
def test_allocate_splits_in_proportion(batch: int, missing: list[int], expected: list[int]) -> None:
    assert allocate(batch, missing) == expected


def test_allocate_sums_to_batch_and_skips_complete_targets() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        missing = rng.integers(0, 20, size=rng.integers(1, 6)).tolist()
        batch = int(rng.integers(0, 25))
        out = allocate(batch, missing)
        assert len(out) == len(missing)
        assert all(isinstance(q, int) and q >= 0 for q in out)
        assert sum(out) == (batch if sum(missing) > 0 else 0)
        assert all(q == 0 for q, m in zip(out, missing) if m == 0)
        # proportional: never more than one slot away from the exact share
        share = batch * np.asarray(missing) / max(sum(missing), 1)
        assert np.all(np.abs(np.asarray(out) - share) < 1.0 + 1e-9)
        assert allocate(batch, missing) == out, "deterministic"


# -- log_window_probability on real models ---------------------------------------------


def _stable_log_window(mu: np.ndarray, sd: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``log(Phi(b) - Phi(a))`` without cancellation in either tail."""
    a, b = (lo - mu) / sd, (hi - mu) / sd
    right = a > 0  # both bounds above the mean: difference of survival functions
    la, lb = norm.logsf(a), norm.logsf(b)
    ca, cb = norm.logcdf(a), norm.logcdf(b)
    with np.errstate(divide="ignore"):
        upper = la + np.log1p(-np.exp(lb - la))
        lower = cb + np.log1p(-np.exp(ca - cb))
    return np.where(right, upper, lower)


@pytest.fixture(scope="module")
def ensemble_problem() -> tuple[SurrogateEnsemble, np.ndarray]:

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    U = rng.random((60, 2))
    y = np.sin(3.0 * U[:, 0]) + U[:, 1] ** 2 + 0.5
    model = SurrogateEnsemble(2, EnsembleConfig(members=3, hidden=16, layers=2, epochs=30, seed=0))
    model.fit(U, y)
    return model, rng.random((150, 2))


@pytest.mark.parametrize(("lo", "hi"), [(0.8, 1.2), (0.1, 0.3), (0.5, 2.0), (1.0, 1.1)])
def test_log_window_probability_matches_ensemble_posterior(
    ensemble_problem: tuple[SurrogateEnsemble, np.ndarray], lo: float, hi: float
) -> None:
    model, U = ensemble_problem
    mu, sd = model.predict(U)
    assert sd.min() > 0 and np.ptp(mu) > 0.05, "a degenerate model would make the check vacuous"
    got = log_window_probability(model, U, lo, hi)
    with np.errstate(divide="ignore"):  # far tails underflow to log(0) here
        ref = np.log(norm.cdf((hi - mu) / sd) - norm.cdf((lo - mu) / sd))
    finite = np.isfinite(ref)
    assert got.shape == (len(U),)
    assert np.all(got <= 1e-6)
    assert np.all(np.abs(got[finite] - ref[finite]) <= 1e-4 * np.maximum(1.0, np.abs(ref[finite])))
    # far tails, where the plain formula underflows: a stable reference
    stable = _stable_log_window(mu, sd, lo, hi)
    assert np.all(np.abs(got - stable) <= 1e-4 * np.maximum(1.0, np.abs(stable)))


def test_log_window_probability_chunking_and_std(ensemble_problem: tuple[SurrogateEnsemble, np.ndarray]) -> None:
    model, U = ensemble_problem
    whole = log_window_probability(model, U, 0.8, 1.2)
    chunked = log_window_probability(model, U, 0.8, 1.2, chunk=7)  # float32: tails agree to ~1e-5 relative
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-5)
    _, sd = model.predict(U)
    np.testing.assert_allclose(posterior_std(model, U), sd, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(posterior_std(model, U, chunk=11), sd, rtol=1e-5, atol=1e-6)
    wider = log_window_probability(model, U, 0.7, 1.3)
    assert np.all(wider >= whole - 1e-6), "a wider window is at least as likely"
    assert log_window_probability(model, np.zeros((0, 2)), 0.8, 1.2).shape == (0,)


def test_log_window_probability_on_a_gp_in_float64() -> None:
    from botorch.models import SingleTaskGP

    rng = np.random.default_rng(2)
    X = torch.as_tensor(rng.random((30, 2)), dtype=torch.float64)
    Y = (torch.sin(3.0 * X[:, :1]) + X[:, 1:] ** 2).to(torch.float64)
    gp = SingleTaskGP(X, Y)
    gp.eval()
    U = rng.random((80, 2))
    with torch.no_grad():
        post = gp.posterior(torch.as_tensor(U, dtype=torch.float64))
        mu = post.mean[:, 0].numpy()
        sd = post.variance[:, 0].clamp_min(1e-12).sqrt().numpy()
    for lo, hi in [(0.3, 0.6), (0.9, 1.0), (-0.5, 2.5)]:
        got = log_window_probability(gp, U, lo, hi)
        assert got.dtype == np.float64
        ref = _stable_log_window(mu, sd, lo, hi)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(posterior_std(gp, U), sd, rtol=1e-6, atol=1e-8)


# -- choose_batch ------------------------------------------------------------------------


def _grid(step: float = 0.1) -> np.ndarray:
    ticks = np.arange(0.0, 1.0 + 1e-9, step)
    return np.array([[x, y] for x in ticks for y in ticks])


def _min_pairwise(U: np.ndarray) -> float:
    if len(U) < 2:
        return np.inf
    d = cdist(U, U)
    return float(d[np.triu_indices(len(U), 1)].min())


def _smooth_scores(U: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    return -10.0 * np.sum((U - np.asarray(centre)) ** 2, axis=1)


def test_batch_rows_are_spaced() -> None:
    U = _grid(0.05)  # 441 rows, 0.05 apart: many near-duplicates of the best row
    log_pf = _smooth_scores(U, (0.5, 0.5))[None]
    sigma = np.ones(len(U))
    cfg = SelectionConfig(batch_size=8, exploration=0.25, min_distance=0.17)
    choice = choose_batch(log_pf, sigma, U, [8], cfg)
    assert len(choice.index) == 8
    assert len(set(choice.index.tolist())) == 8
    assert _min_pairwise(U[choice.index]) >= 0.17 - 1e-9
    assert choice.index[0] == int(np.argmax(log_pf[0])), "the best row is taken first"
    np.testing.assert_allclose(choice.score, log_pf[0, choice.index])
    assert choice.target.tolist() == [0] * 8


def test_spacing_is_inclusive_at_exactly_min_distance() -> None:
    U = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0]])
    log_pf = np.array([[0.0, -0.1, -0.2]])
    cfg = SelectionConfig(batch_size=3, exploration=0.0, min_distance=0.1)
    assert sorted(choose_batch(log_pf, np.ones(3), U, [3], cfg).index.tolist()) == [0, 1, 2]
    cfg = SelectionConfig(batch_size=3, exploration=0.0, min_distance=0.1000001)
    assert sorted(choose_batch(log_pf, np.ones(3), U, [3], cfg).index.tolist()) == [0, 2]


def test_nothing_near_pending_designs() -> None:
    U = _grid(0.1)
    log_pf = _smooth_scores(U, (0.5, 0.5))[None]
    pending = np.array([[0.5, 0.5], [0.2, 0.8]])
    cfg = SelectionConfig(batch_size=6, exploration=0.0, min_distance=0.15)
    choice = choose_batch(log_pf, np.ones(len(U)), U, [6], cfg, pending=pending)
    assert len(choice.index) == 6
    assert cdist(U[choice.index], pending).min() >= 0.15 - 1e-9
    assert _min_pairwise(U[choice.index]) >= 0.15 - 1e-9
    # without the pending designs the best row (the centre) would have been first
    free = choose_batch(log_pf, np.ones(len(U)), U, [6], cfg)
    assert np.allclose(U[free.index[0]], [0.5, 0.5])


def test_hits_block_only_their_own_target() -> None:
    U = _grid(0.1)
    centre = (0.5, 0.5)
    log_pf = np.stack([_smooth_scores(U, centre), _smooth_scores(U, centre)])
    hits = [np.array([[0.5, 0.5], [0.6, 0.5]]), np.zeros((0, 2))]
    cfg = SelectionConfig(batch_size=6, exploration=0.0, min_distance=0.15)
    choice = choose_batch(log_pf, np.ones(len(U)), U, [5, 5], cfg, hits=hits)
    assert len(choice.index) == 6
    t0 = choice.index[choice.target == 0]
    t1 = choice.index[choice.target == 1]
    assert len(t0) == 3 and len(t1) == 3
    assert cdist(U[t0], hits[0]).min() >= 0.15 - 1e-9
    # target 1 has no hits: it may (and here does) take a design next to target 0's hit
    assert cdist(U[t1], hits[0]).min() < 0.15
    assert _min_pairwise(U[choice.index]) >= 0.15 - 1e-9

    # the same hits given to target 1 instead: now target 0 takes the centre
    swapped = choose_batch(log_pf, np.ones(len(U)), U, [5, 5], cfg, hits=hits[::-1])
    s0 = swapped.index[swapped.target == 0]
    s1 = swapped.index[swapped.target == 1]
    assert np.allclose(U[s0[0]], centre)
    assert cdist(U[s1], hits[0]).min() >= 0.15 - 1e-9


def test_exploitation_and_exploration_ranking() -> None:
    # rows far apart so spacing never interferes
    U = np.array([[i / 10.0, 0.0] for i in range(10)])
    log_pf = np.log(np.array([0.9, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.04, 0.01, 0.001]))
    sigma = np.array([0.1, 0.2, 0.3, 0.9, 0.4, 0.8, 0.7, 0.2, 5.0, 9.0])
    cfg = SelectionConfig(batch_size=5, exploration=0.4, min_distance=0.05, explore_floor=0.05)
    assert round(cfg.exploration * cfg.batch_size) == 2
    choice = choose_batch(log_pf[None], sigma, U, [5], cfg)
    assert choice.reason == ["exploit", "exploit", "exploit", "explore", "explore"]
    assert choice.index[:3].tolist() == [0, 1, 2], "exploitation: highest log_pf first"
    # eligible for exploration: p >= 0.05 * 0.9 = 0.045 -> rows 0..6 (rows 8, 9 have the
    # largest sigma but no fair chance of a hit); among those not taken, largest sigma
    assert choice.index[3:].tolist() == [3, 5]
    np.testing.assert_allclose(choice.score, log_pf[choice.index])

    loose = choose_batch(log_pf[None], sigma, U, [5], SelectionConfig(5, 0.4, 0.05, explore_floor=1e-4))
    assert loose.index[3:].tolist() == [9, 8], "a lower floor admits the most uncertain rows"


@pytest.mark.parametrize(("exploration", "n_explore"), [(0.25, 2), (0.3, 2), (0.15, 1), (0.0, 0), (1.0, 8)])
def test_exploration_share_is_rounded(exploration: float, n_explore: int) -> None:
    U = _grid(0.1)
    log_pf = _smooth_scores(U, (0.3, 0.7))[None]
    sigma = np.random.default_rng(0).random(len(U))
    cfg = SelectionConfig(batch_size=8, exploration=exploration, min_distance=0.0, explore_floor=1e-12)
    choice = choose_batch(log_pf, sigma, U, [8], cfg)
    assert choice.reason.count("explore") == n_explore
    assert choice.reason.count("exploit") == 8 - n_explore


def test_two_targets_share_the_batch_by_missing_hits() -> None:
    U = _grid(0.1)
    log_pf = np.stack([_smooth_scores(U, (0.2, 0.2)), _smooth_scores(U, (0.8, 0.8))])
    cfg = SelectionConfig(batch_size=8, exploration=0.0, min_distance=0.1)
    choice = choose_batch(log_pf, np.ones(len(U)), U, [30, 10], cfg)
    assert len(choice.index) == 8
    assert (choice.target == 0).sum() == 6
    assert (choice.target == 1).sum() == 2
    # each target's rows are its own best ones
    assert np.allclose(U[choice.index[choice.target == 0][0]], [0.2, 0.2])
    assert np.allclose(U[choice.index[choice.target == 1][0]], [0.8, 0.8])
    np.testing.assert_allclose(choice.score, log_pf[choice.target, choice.index])


def test_complete_target_gets_no_slot() -> None:
    U = _grid(0.1)
    # target 1 scores higher everywhere, but it already has all its hits
    log_pf = np.stack([_smooth_scores(U, (0.2, 0.2)), _smooth_scores(U, (0.8, 0.8)) + 5.0])
    cfg = SelectionConfig(batch_size=6, exploration=0.34, min_distance=0.1)
    choice = choose_batch(log_pf, np.ones(len(U)), U, [4, 0], cfg)
    assert len(choice.index) == 6
    assert choice.target.tolist() == [0] * 6


def test_complete_target_gets_no_slot_when_the_needy_one_runs_short() -> None:
    U = _grid(0.1)
    log_pf = np.stack([_smooth_scores(U, (0.5, 0.5)), _smooth_scores(U, (0.5, 0.5)) + 1.0])
    # target 0's hits cover every candidate but two corners: it can fill only 2 of 4 slots
    hits0 = U[~(np.all(U == [0.0, 0.0], axis=1) | np.all(U == [1.0, 1.0], axis=1))]
    cfg = SelectionConfig(batch_size=4, exploration=0.0, min_distance=0.05)
    choice = choose_batch(log_pf, np.ones(len(U)), U, [4, 0], cfg, hits=[hits0, np.zeros((0, 2))])
    assert set(choice.target.tolist()) <= {0}, f"complete target 1 got slots: {choice.target.tolist()}"
    assert len(choice.index) == 2


def test_batch_is_short_rather_than_crowded() -> None:
    # five candidates all within 0.05 of each other: only one fits at min_distance 0.2
    U = np.array([[0.5, 0.5], [0.52, 0.5], [0.5, 0.52], [0.48, 0.5], [0.5, 0.48]])
    log_pf = np.log(np.array([[0.2, 0.5, 0.1, 0.3, 0.4]]))
    cfg = SelectionConfig(batch_size=4, exploration=0.5, min_distance=0.2)
    choice = choose_batch(log_pf, np.ones(5), U, [4], cfg)
    assert choice.index.tolist() == [1]
    assert choice.reason == ["exploit"]
    # fewer candidates than slots
    U2 = np.array([[0.0, 0.0], [1.0, 1.0]])
    choice = choose_batch(np.zeros((1, 2)), np.ones(2), U2, [5], SelectionConfig(5, 0.2, 0.1))
    assert sorted(choice.index.tolist()) == [0, 1]
    # no candidates at all: an empty batch
    empty = choose_batch(np.zeros((1, 0)), np.ones(0), U2[:0], [5], SelectionConfig(5, 0.2, 0.1))
    assert len(empty.index) == 0 and empty.score.shape == (0,) and empty.reason == []


def test_short_fill_uses_spare_candidates_of_another_target() -> None:
    # target 0 (quota 2) is boxed in by its hits after one row; its unused slot goes to the
    # best remaining row (here one of target 1's), still respecting batch spacing
    U = _grid(0.1)
    log_pf = np.stack([_smooth_scores(U, (0.5, 0.5)), _smooth_scores(U, (0.5, 0.5)) + 1.0])
    hits = [U[np.linalg.norm(U - [0.5, 0.5], axis=1) > 0.15], np.zeros((0, 2))]  # all but the centre blocked
    cfg = SelectionConfig(batch_size=3, exploration=0.0, min_distance=0.15)
    choice = choose_batch(log_pf, np.ones(len(U)), U, [3, 3], cfg, hits=hits)
    assert _min_pairwise(U[choice.index]) >= 0.15 - 1e-9
    t0 = choice.index[choice.target == 0]
    assert len(t0) == 1 and np.allclose(U[t0[0]], [0.5, 0.5])
    assert choice.target.tolist() == [0, 1, 1]
    assert choice.reason == ["exploit"] * 3


def test_hit_ok_bars_rows_from_hits_not_from_exploration() -> None:
    # the same ten rows as the ranking test; rows 0 and 2 may not be hits (the loop's max_sigma)
    U = np.array([[i / 10.0, 0.0] for i in range(10)])
    log_pf = np.log(np.array([0.9, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.04, 0.01, 0.001]))[None]
    sigma = np.array([9.0, 0.2, 0.3, 0.9, 0.4, 0.8, 0.7, 0.2, 5.0, 9.5])
    hit_ok = np.ones(10, dtype=bool)
    hit_ok[[0, 2]] = False
    cfg = SelectionConfig(batch_size=5, exploration=0.4, min_distance=0.05, explore_floor=0.05)
    free = choose_batch(log_pf, sigma, U, [5], cfg)
    assert free.index[:3].tolist() == [0, 1, 2] and free.reason[:3] == ["exploit"] * 3
    capped = choose_batch(log_pf, sigma, U, [5], cfg, hit_ok=hit_ok)
    assert capped.index[:3].tolist() == [1, 3, 4], "the next best allowed rows serve as hits"
    # exploration is not capped: row 0 (largest sigma of the eligible rows) is explored
    assert capped.index[3:].tolist() == [0, 5] and capped.reason == ["exploit"] * 3 + ["explore"] * 2
    # every row allowed: the batch of no cap, exactly
    same = choose_batch(log_pf, sigma, U, [5], cfg, hit_ok=np.ones(10, dtype=bool))
    assert same.index.tolist() == free.index.tolist() and same.reason == free.reason


def test_slots_no_allowed_hit_can_fill_go_to_exploration() -> None:
    U = _grid(0.1)
    log_pf = np.stack([_smooth_scores(U, (0.2, 0.2)), _smooth_scores(U, (0.8, 0.8))])
    sigma = np.random.default_rng(1).random(len(U))
    cfg = SelectionConfig(batch_size=6, exploration=0.0, min_distance=0.1, explore_floor=1e-12)
    none_ok = np.zeros(len(U), dtype=bool)
    choice = choose_batch(log_pf, sigma, U, [3, 1], cfg, hit_ok=none_ok)
    assert len(choice.index) == 6, "the cap moves slots to exploration, it does not shrink the batch"
    assert choice.reason == ["explore"] * 6
    assert choice.target.tolist().count(0) >= 4, "shared by the hits each target lacks"
    assert _min_pairwise(U[choice.index]) >= 0.1 - 1e-9
    # a complete target gets no exploration either
    done = choose_batch(log_pf, sigma, U, [3, 0], cfg, hit_ok=none_ok)
    assert done.target.tolist() == [0] * 6
