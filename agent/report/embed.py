"""The report's two-dimensional map of designs: UMAP of the data, campaign designs placed on it.

One map serves the design-space figure (Fig. 2c) and the switching figure (Fig. 6), so
a candidate lands where data like it lie. Inputs are unit-box designs, every parameter
on the same scale.

Why it is built this way (speed, without changing what the figures show):

- The UMAP (umap-learn, ``random_state`` fixed, so deterministic and single-threaded)
  is fitted on the data sample only. It depends on nothing a campaign changes, so it is
  stored in the report cache (`agent.report.cache`) under a hash of the rows and the
  settings and read back by every later report instead of being refitted.
- The exact nearest neighbours are computed here (a k-d tree) and handed to UMAP:
  below 4096 rows umap-learn otherwise computes all pairwise distances through a
  Python-called metric, 16 million calls for 4000 rows (most of a report's time).
- Campaign designs (candidates, pair ends) are placed on that map the way
  ``UMAP.transform`` places new points (`place`), re-implemented in numpy because a
  fitted UMAP object cannot be stored without pickle: start at the mean of the
  positions of the ``n_neighbors`` nearest data designs, weighted by UMAP's fuzzy
  membership strengths, then UMAP's own attraction/repulsion steps with the data
  fixed. The start alone would be wrong: a design whose neighbours lie in two distant
  parts of the map would land on a bridge between them that no data supports.
  On the default campaign the result is within 0.2 map units (median) of
  umap-learn's ``transform``; the map spans about 8.

Before this, every report refitted one UMAP on data and candidates together (26 s of a
38 s report on an idle two-core machine, over a minute on a busy one); now a report
reads the data's map and places ~1500 designs in about half a second. The data map no
longer moves with the candidates, so the maps of two reports can be compared directly.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings

import numpy as np
from scipy.spatial import cKDTree

from agent.report.cache import ArrayCache, content_key

__all__ = ["N_NEIGHBORS", "base_embedding", "embed", "embedding_key", "place", "subsample"]

N_NEIGHBORS = 15
MIN_DIST = 0.1
EPOCHS = 200
_TOLERANCE = 1e-5  # umap-learn's SMOOTH_K_TOLERANCE
_MIN_SCALE = 1e-3  # umap-learn's MIN_K_DIST_SCALE


def subsample(n: int, at_most: int, seed: int) -> np.ndarray:
    """Sorted row indices: all ``n`` rows, or a seeded random ``at_most`` of them."""
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=at_most, replace=False))


def _knn(U: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    dist, idx = cKDTree(U).query(U, k=k)
    return np.asarray(idx, dtype=np.int64).reshape(len(U), k), np.asarray(dist, dtype=np.float32).reshape(len(U), k)


def embed(U: np.ndarray, *, seed: int = 0, n_neighbors: int = N_NEIGHBORS, epochs: int = EPOCHS) -> np.ndarray:
    """``(n, 2)`` UMAP coordinates of unit-box designs ``U (n, d)``; tiny inputs are laid out directly."""
    U = np.asarray(U, dtype=np.float64)
    if len(U) == 0:
        return np.zeros((0, 2))
    if len(U) <= max(4, n_neighbors // 3):  # too few points for a neighbour graph: keep two coordinates
        return U[:, :2].copy() if U.shape[1] >= 2 else np.hstack([U, np.zeros((len(U), 1))])
    if "numba" not in sys.modules:  # random_state makes the fit serial; parallel helpers would only contend
        os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # (once numba's threads run, this must not change)
    import umap  # umap-learn (numba: seconds to import) only when a map is fitted, not read from the cache

    k = min(n_neighbors, len(U) - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", no search index, numba notices
        model = umap.UMAP(
            n_components=2,
            n_neighbors=k,
            min_dist=MIN_DIST,
            n_epochs=epochs,
            random_state=seed,
            precomputed_knn=_knn(U, k),
        )
        return np.asarray(model.fit_transform(U), dtype=np.float64)


def embedding_key(U: np.ndarray, seed: int) -> str:
    """The cache key of `embed` of ``U`` (unit box): the rows, the UMAP settings and the seed."""
    return content_key("umap-embedding", np.ascontiguousarray(U, dtype=np.float64), N_NEIGHBORS, MIN_DIST, EPOCHS, seed)


def base_embedding(U: np.ndarray, *, seed: int, cache: ArrayCache | None) -> tuple[np.ndarray, bool]:
    """`embed` of ``U``, read from ``cache`` when it holds it (second value: it did), else fitted and stored."""
    U = np.ascontiguousarray(U, dtype=np.float64)
    key = embedding_key(U, seed)
    if cache is not None:
        got = cache.load("umap", key, {"xy": (len(U), 2)})
        if got is not None:
            return got["xy"].astype(np.float64), True
    xy = embed(U, seed=seed)
    if cache is not None:
        cache.store("umap", key, {"xy": xy})
    return xy, False


def _sigmas(dist: np.ndarray) -> np.ndarray:
    """umap-learn's ``smooth_knn_dist`` for new points (local connectivity 0, so ρ = 0), vectorised.

    Per row, the σ at which ``Σ_{j>=1} exp(-d_j / σ)`` equals ``log2(k)`` (binary search, 64 steps).
    """
    m, k = dist.shape
    target = np.log2(k)
    lo, hi, mid = np.zeros(m), np.full(m, np.inf), np.ones(m)
    active = np.ones(m, dtype=bool)
    rest = dist[:, 1:]
    for _ in range(64):
        psum = np.where(rest > 0, np.exp(-rest / mid[:, None]), 1.0).sum(axis=1)
        active &= np.abs(psum - target) >= _TOLERANCE
        if not active.any():
            break
        over = active & (psum > target)
        under = active & ~over
        hi = np.where(over, mid, hi)
        lo = np.where(under, mid, lo)
        mid = np.where(over | (under & np.isfinite(hi)), (lo + hi) / 2.0, np.where(under, mid * 2.0, mid))
    return np.maximum(mid, _MIN_SCALE * float(dist.mean()))


@functools.cache
def _ab(min_dist: float, spread: float = 1.0) -> tuple[float, float]:
    """umap-learn's ``find_ab_params``: the curve ``1 / (1 + a d^(2b))`` that UMAP's layout optimises."""
    from scipy.optimize import curve_fit  # scipy.optimize only when a new map's curve is needed

    def curve(x: np.ndarray, a: float, b: float) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + a * x ** (2 * b)))

    xv = np.linspace(0, spread * 3, 300)
    yv = np.where(xv < min_dist, 1.0, np.exp(-(xv - min_dist) / spread))
    params, _ = curve_fit(curve, xv, yv)
    return float(params[0]), float(params[1])


def _refine(
    xy: np.ndarray, idx: np.ndarray, member: np.ndarray, xy_base: np.ndarray, epochs: int, seed: int
) -> np.ndarray:
    """umap-learn's ``UMAP.transform`` refinement (``optimize_layout_euclidean``, base points fixed), in numpy.

    Each new point is pulled towards its data neighbours (edges sampled in proportion
    to their membership, weak ones below ``max / epochs`` dropped) and pushed from
    five random data points per pull, with the learning rate falling from 1/4 to 0. New
    points never act on each other, so running the edges of every point side by side,
    neighbour by neighbour, is the same as umap-learn's loop; only the random stream of
    the repelling points differs (seeded here).
    """
    a, b = _ab(MIN_DIST)
    xy = np.array(xy, dtype=np.float64)
    active = member >= member.max() / epochs
    per = np.where(active, member.max() / np.where(active, member, 1.0), np.inf)  # epochs per sample
    per_neg = per / 5.0  # negative_sample_rate
    next_pos, next_neg = per.copy(), per_neg.copy()
    rng = np.random.default_rng(seed)
    alpha = 0.25  # UMAP's initial_alpha / 4, as in transform
    for n in range(epochs):
        for r in range(idx.shape[1]):
            rows = np.flatnonzero(next_pos[:, r] <= n)
            if not len(rows):
                continue
            cur = xy[rows]
            diff = cur - xy_base[idx[rows, r]]
            d2 = np.einsum("ij,ij->i", diff, diff)
            pos = d2 > 0
            coeff = np.zeros(len(rows))
            power = d2[pos] ** b
            coeff[pos] = -2.0 * a * b * (power / d2[pos]) / (a * power + 1.0)
            cur += np.clip(coeff[:, None] * diff, -4.0, 4.0) * alpha
            next_pos[rows, r] += per[rows, r]
            n_neg = np.maximum(((n - next_neg[rows, r]) / per_neg[rows, r]).astype(np.int64), 0)
            for q in range(int(n_neg.max(initial=0))):
                sel = np.flatnonzero(n_neg > q)
                diff = cur[sel] - xy_base[rng.integers(len(xy_base), size=len(sel))]
                d2 = np.einsum("ij,ij->i", diff, diff)
                coeff = np.zeros(len(sel))
                pos = d2 > 0
                coeff[pos] = 2.0 * b / ((0.001 + d2[pos]) * (a * d2[pos] ** b + 1.0))
                cur[sel] += np.clip(coeff[:, None] * diff, -4.0, 4.0) * alpha
            next_neg[rows, r] += n_neg * per_neg[rows, r]
            xy[rows] = cur
        alpha = 0.25 * (1.0 - n / epochs)
    return xy


def place(
    U: np.ndarray,
    U_base: np.ndarray,
    xy_base: np.ndarray,
    *,
    n_neighbors: int = N_NEIGHBORS,
    epochs: int = EPOCHS // 3,
    seed: int = 0,
) -> np.ndarray:
    """``(m, 2)`` positions of unit-box designs ``U (m, d)`` on the embedding ``xy_base`` of ``U_base``.

    What ``UMAP.transform`` does, without a fitted UMAP object (none can be stored
    without pickle): membership ``exp(-d / σ)`` of each of the ``n_neighbors`` nearest
    base designs (σ as in `_sigmas`); start at the membership-weighted mean of their
    positions (exactly at a base design at distance 0); then `_refine` for ``epochs``
    (UMAP's transform uses a third of the fit's epochs). Deterministic for ``seed``;
    equal designs get equal positions.
    """
    U = np.asarray(U, dtype=np.float64)
    if len(U) == 0 or len(U_base) == 0:
        return np.full((len(U), 2), np.nan)
    U, again = np.unique(U, axis=0, return_inverse=True)  # a design listed twice lands once (as in umap-learn)
    k = min(n_neighbors, len(U_base))
    dist, idx = cKDTree(np.asarray(U_base, dtype=np.float64)).query(U, k=k)
    dist, idx = np.asarray(dist, dtype=np.float64).reshape(len(U), k), np.asarray(idx).reshape(len(U), k)
    sigma = _sigmas(dist)
    member = np.where(dist > 0, np.exp(-dist / sigma[:, None]), 1.0)
    xy = np.einsum("mk,mkc->mc", member, xy_base[idx]) / member.sum(axis=1)[:, None]
    same = dist[:, 0] <= 0.0
    xy[same] = xy_base[idx[same, 0]]
    if epochs > 0:
        xy = _refine(xy, idx, member, np.asarray(xy_base, dtype=np.float64), epochs, seed)
    return np.asarray(xy[again.reshape(-1)], dtype=np.float64)
