"""Choosing what to measure: BoTorch acquisitions scored on candidates, batches picked greedily.

Why this shape: candidates already come from a generator (or from the oracle's pool), so
the acquisition is evaluated on a finite set instead of optimised over the box; a batch
is then filled greedily under distance rules that make it *batch-aware*:

- no two designs of a batch closer than ``min_distance`` (unit box);
- nothing within ``min_distance`` of a design already pending at the oracle;
- for a target, nothing within ``min_distance`` of a hit already found for it (another
  measurement there cannot add a *diverse* hit);
- nothing already measured.

A target's hits can be *spread*: "0.1 apart" is a rule one basin satisfies many times over,
while a scientist wants every distinct way to reach the target. Given a radius per target
(the campaign's: the size of the families its models believe in, `agent.design.coverage`),
hit slots go first to likely candidates in regions no hit or pending design has reached
(probes), then to the least crowded likely candidates, so hits cover the regions instead
of mining the likeliest one (measured in ``benchmarks/coverage.py``).

Exploitation slots rank by `LogProbabilityOfFeasibility` of the target window (the
log-probability that the oracle value lands in ``[target - w, target + w]``), times the
probability of meeting the campaign's limits on other properties where it sets any
(``[[constraints]]``, `log_feasibility`: a design in the window is worthless if infeasible); the
exploration share ranks by `PosteriorStandardDeviation` among candidates that still have
a fair chance of a hit, so an exploration slot teaches the model where it matters.
Targets share a batch in proportion to what each still lacks (hits, or families without a
hit where a target asks for them: the caller's ``missing``).

An optional ``hit_ok`` mask (the loop's ``[loop] max_sigma``: the surrogate's σ at most
the cap) bars rows from the slots that bet on a hit (``exploit``), never from
exploration: a design the model is unsure of is exactly what exploration should measure.
Slots that no allowed row can fill as a hit go to exploration instead, so a strict cap
turns the batch towards learning rather than shrinking it (an empty batch would stall the
campaign: no new data, the same models, the same refusals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from botorch.acquisition.analytic import LogProbabilityOfFeasibility, PosteriorStandardDeviation
from botorch.models.model import Model
from scipy.spatial import cKDTree

__all__ = [
    "BatchChoice",
    "SelectionConfig",
    "Spread",
    "allocate",
    "choose_batch",
    "log_feasibility",
    "log_window_probability",
    "posterior_std",
]


@dataclass(frozen=True)
class SelectionConfig:
    """Batch size, the share of it spent on exploration, and the near-duplicate radius."""

    batch_size: int = 10
    exploration: float = 0.2
    min_distance: float = 0.1
    # exploration only among candidates whose window probability is at least this share
    # of the best one: uncertainty far from any target teaches nothing useful
    explore_floor: float = 0.05
    # spreading a target's hits (``spread`` given): first up to this share of its hit slots
    # probe regions holding no hit or pending design yet, each a candidate with at least
    # ``probe_floor`` window probability; the rest go to the least crowded candidates whose
    # probability is at least ``spread_floor`` of the target's best. Measured in
    # benchmarks/coverage.py (the note of issue 16): a larger share covers more families
    # and finds fewer hits.
    probe_share: float = 0.75
    probe_floor: float = 0.05
    spread_floor: float = 0.5


@dataclass(frozen=True)
class Spread:
    """How a target's hits are spread: over ``radius`` (unit box), with at most ``probes``
    probes per batch (the regions known to lack a hit; ``None``: the probe share alone) and
    ``floor`` for the crowding order (``None``: the config's ``spread_floor``)."""

    radius: float
    probes: int | None = None
    floor: float | None = None


@dataclass(frozen=True)
class BatchChoice:
    """Rows of the candidate array chosen, the target each serves and why (exploit/explore)."""

    index: np.ndarray  # (k,) int rows of the candidate array
    target: np.ndarray  # (k,) int target index
    reason: list[str]
    score: np.ndarray  # (k,) log window probability of the chosen row for its target


def _evaluate(acq: torch.nn.Module, U: np.ndarray, dtype: torch.dtype, chunk: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(U), chunk):
            X = torch.as_tensor(U[start : start + chunk], dtype=dtype).unsqueeze(-2)  # b x 1 x d
            out.append(acq(X).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _dtype(model: Model) -> torch.dtype:
    p = next(iter(model.parameters()), None)
    return p.dtype if p is not None else torch.float64


def log_window_probability(model: Model, U: np.ndarray, lower: float, upper: float, *, chunk: int = 8192) -> np.ndarray:
    """``log P(lower <= y(u) <= upper)`` for candidates ``U (n, d)`` -> ``(n,)``; an infinite
    bound is an open side (a one-sided target)."""
    lo, hi = (float(b) if np.isfinite(b) else None for b in (lower, upper))
    acq = LogProbabilityOfFeasibility(model, {0: (lo, hi)})
    return _evaluate(acq, np.asarray(U), _dtype(model), chunk)


def log_feasibility(limits: Sequence[tuple[Model | None, float, float]], U: np.ndarray) -> np.ndarray:
    """``log P(feasible)`` at ``U (n, d)`` -> ``(n,)``: the sum over ``limits`` (a model of one
    more property and its bounds, an infinite bound an open side) of the log Gaussian
    probability of lying within the bounds, log(Φ((hi-μ)/σ) - Φ((lo-μ)/σ)), the properties
    taken as independent. A limit without a model (too few measurements yet) adds nothing:
    unknown is not infeasible, and only measuring there can tell."""
    total = np.zeros(len(U))
    for model, lo, hi in limits:
        if model is not None:
            total = total + log_window_probability(model, U, lo, hi)
    return total


def posterior_std(model: Model, U: np.ndarray, *, chunk: int = 8192) -> np.ndarray:
    """Posterior standard deviation of ``y`` at ``U (n, d)`` -> ``(n,)``."""
    return _evaluate(PosteriorStandardDeviation(model), np.asarray(U), _dtype(model), chunk)


def allocate(batch_size: int, missing: Sequence[int]) -> list[int]:
    """Split ``batch_size`` slots over targets in proportion to the hits each still lacks.

    Targets that lack nothing get nothing; largest remainders break ties, earlier targets
    first, so the split is deterministic.
    """
    need = np.maximum(np.asarray(missing, dtype=np.float64), 0)
    if need.sum() == 0 or batch_size <= 0:
        return [0] * len(need)
    raw = batch_size * need / need.sum()
    quota = np.floor(raw).astype(int)
    order = sorted(range(len(need)), key=lambda i: (-(raw[i] - quota[i]), i))
    for i in order[: batch_size - int(quota.sum())]:
        quota[i] += 1
    return [int(q) for q in quota]


class _Spacing:
    """Near-duplicate test against a growing set of points (KD-tree plus a short list)."""

    def __init__(self, fixed: np.ndarray, radius: float, dim: int) -> None:
        fixed = np.asarray(fixed, dtype=np.float64).reshape(-1, dim)
        self.tree = cKDTree(fixed) if len(fixed) else None
        self.added: list[np.ndarray] = []
        self.radius = radius

    def clear(self, u: np.ndarray) -> bool:
        if self.radius <= 0:
            return True
        if self.tree is not None and self.tree.query_ball_point(u, self.radius - 1e-12, return_length=True) > 0:
            return False
        return all(np.linalg.norm(u - a) >= self.radius for a in self.added)

    def add(self, u: np.ndarray) -> None:
        self.added.append(np.asarray(u, dtype=np.float64))


def choose_batch(
    log_pf: np.ndarray,
    sigma: np.ndarray,
    U: np.ndarray,
    missing: Sequence[int],
    config: SelectionConfig,
    *,
    pending: np.ndarray | None = None,
    hits: Sequence[np.ndarray] | None = None,
    hit_ok: np.ndarray | None = None,
    spread: Sequence[Spread | None] | None = None,
    log_feasible: np.ndarray | None = None,
) -> BatchChoice:
    """Pick up to ``batch_size`` rows of ``U (n, d)``.

    ``log_pf (T, n)``: log window probability per target; ``sigma (n,)``: posterior std;
    ``missing (T,)``: what each target still lacks (hits, or families); ``pending (p, d)`` designs at the
    oracle; ``hits[t] (h_t, d)`` diverse hits of target ``t`` (candidates already measured are
    the caller's to drop: the loop does, before scoring); ``hit_ok (n,)`` bool, the rows that may be
    chosen as hits (``exploit``; ``None``: every row). With ``hit_ok`` given, slots left
    after the hits and the exploration share go to exploration of the targets still
    lacking hits (ranked by ``sigma``, as the exploration share is).

    ``spread[t]``: a radius (unit box) over which target ``t``'s hits are spread (``None``: by
    probability alone). A candidate's crowding is the number of the target's hits, pending
    designs and designs already chosen within that radius; hit slots go first, up to
    ``probe_share`` of them, to uncrowded candidates (a region no hit has reached, at least
    ``probe_floor`` likely, one per region), then to the least crowded candidates at least
    ``spread_floor`` as likely as the best one, likeliest first among equals.

    ``log_feasible (n,)``: the log-probability that each row satisfies the campaign's limits on
    other properties (`log_feasibility`); a hit must be in the window *and* feasible, so every
    use of the window probability above (hits, spreading, the exploration floor, the score)
    takes ``log_pf + log_feasible``, the log of P(window) × P(feasible). The exploration
    share and its σ ranking are unchanged.
    """
    U = np.asarray(U, dtype=np.float64)
    n, dim = U.shape
    T = len(missing)
    log_pf = np.asarray(log_pf, dtype=np.float64).reshape(T, n)
    if log_feasible is not None:
        log_pf = log_pf + np.asarray(log_feasible, dtype=np.float64).reshape(1, n)
    empty = np.zeros((0, dim))
    pending = empty if pending is None else np.asarray(pending, dtype=np.float64).reshape(-1, dim)
    hit_sets = [empty] * T if hits is None else [np.asarray(h, dtype=np.float64).reshape(-1, dim) for h in hits]
    if n == 0:  # nothing left to choose from (every candidate measured or pending)
        return BatchChoice(np.zeros(0, dtype=int), np.zeros(0, dtype=int), [], np.zeros(0))
    may_hit = np.ones(n, dtype=bool) if hit_ok is None else np.asarray(hit_ok, dtype=bool).reshape(n)
    batch = _Spacing(pending, config.min_distance, dim)
    near_hit = [_Spacing(h, config.min_distance, dim) for h in hit_sets]
    n_explore = round(config.exploration * config.batch_size)
    quota_exploit = allocate(config.batch_size - n_explore, missing)
    quota_explore = allocate(n_explore, missing)
    taken: set[int] = set()
    idx: list[int] = []
    tgt: list[int] = []
    why: list[str] = []

    def fill(order: np.ndarray, t: int, count: int, reason: str) -> None:
        got = 0
        for i in order:
            if got == count:
                break
            i = int(i)
            if i in taken or not batch.clear(U[i]) or not near_hit[t].clear(U[i]):
                continue
            if reason == "exploit" and not may_hit[i]:
                continue
            taken.add(i)
            batch.add(U[i])
            idx.append(i)
            tgt.append(t)
            why.append(reason)
            got += 1

    def spread_fill(t: int, how: Spread, count: int) -> int:
        """Up to ``count`` hit slots of target ``t``, spread (see the docstring); how many filled."""
        radius = how.radius
        loaded = np.vstack([hit_sets[t], pending])
        crowd = np.zeros(n)  # hits, pending and chosen designs within ``radius`` of each row
        if len(loaded):
            crowd = cKDTree(loaded).query_ball_point(U, radius, return_length=True).astype(np.float64)
        near = cKDTree(U)
        got = 0

        def take(ok: np.ndarray, limit: int, probe: bool) -> None:
            nonlocal got
            ok = ok & may_hit  # hit slots only
            ok[list(taken)] = False
            while got < limit and ok.any():
                rows = np.flatnonzero(ok)
                order = rows[np.lexsort((-log_pf[t, rows], crowd[rows]))]  # least crowded, then likeliest
                for i in order:  # the order holds until a row is taken (crowding changes only then)
                    i = int(i)
                    ok[i] = False
                    before = len(idx)
                    fill(np.array([i]), t, 1, "exploit")
                    if len(idx) > before:
                        got += 1
                        crowd[near.query_ball_point(U[i], radius)] += 1
                        if probe:  # one probe per uncovered region
                            ok &= crowd == 0
                        break

        probes = round(config.probe_share * count)
        probes = probes if how.probes is None else min(probes, how.probes)
        take((crowd == 0) & (log_pf[t] >= np.log(config.probe_floor)), probes, True)
        floor = config.spread_floor if how.floor is None else how.floor
        take(log_pf[t] >= log_pf[t].max() + np.log(floor), count, False)
        return got

    # round-robin over targets, exploitation first: the likeliest hits claim their space
    orders = [np.argsort(-log_pf[t], kind="stable") for t in range(T)]
    for t in range(T):
        how = spread[t] if spread is not None else None
        got = spread_fill(t, how, quota_exploit[t]) if how is not None and quota_exploit[t] else 0
        fill(orders[t], t, quota_exploit[t] - got, "exploit")

    def explore_order(t: int) -> np.ndarray:
        floor = log_pf[t].max() + np.log(config.explore_floor)
        eligible = np.flatnonzero(log_pf[t] >= floor)
        return eligible[np.argsort(-np.asarray(sigma)[eligible], kind="stable")]

    for t in range(T):
        if quota_explore[t] == 0:
            continue
        fill(explore_order(t), t, quota_explore[t], "explore")
    # slots nobody could fill (too few spaced candidates) go to the best remaining rows of
    # targets that still lack hits
    short = config.batch_size - len(idx)
    needy = np.asarray(missing) > 0
    if short > 0 and needy.any():
        masked = np.where(needy[:, None], log_pf, -np.inf)
        best = np.argmax(masked, axis=0)
        order = np.argsort(-masked.max(axis=0), kind="stable")
        for i in order:
            if short == 0:
                break
            before = len(idx)
            fill(np.array([i]), int(best[i]), 1, "exploit")
            short -= len(idx) - before
    # with a cap on hits, what no allowed row could fill goes to exploration (only then:
    # without a cap the batch is exactly what it always was)
    if hit_ok is not None and needy.any():
        for t, k in enumerate(allocate(config.batch_size - len(idx), missing)):
            if k:
                fill(explore_order(t), t, k, "explore")
        for tn in np.flatnonzero(needy):  # a target short of spaced rows leaves its share to the others
            fill(explore_order(int(tn)), int(tn), config.batch_size - len(idx), "explore")
    index = np.asarray(idx, dtype=int)
    target = np.asarray(tgt, dtype=int)
    score = log_pf[target, index] if len(index) else np.zeros(0)
    return BatchChoice(index, target, why, score)
