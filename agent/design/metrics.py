"""Figures of merit for generated designs: error against a model, validity, diversity."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["diversity_ratio", "mae_against", "mean_nn_distance"]


def mean_nn_distance(U: np.ndarray) -> float:
    """Mean distance from each row of ``U (n, d)`` to its nearest other row (unit box)."""
    U = np.asarray(U, dtype=np.float64)
    if len(U) < 2:
        return float("nan")
    dist, _ = cKDTree(U).query(U, k=2)
    return float(dist[:, 1].mean())


def diversity_ratio(candidates: np.ndarray, reference: np.ndarray, *, max_n: int = 2000, seed: int = 0) -> float:
    """Mean nearest-neighbour distance of candidates over that of reference rows, at equal ``n``.

    Nearest-neighbour distances shrink with the number of points, so both sets are
    subsampled to the same size before comparing; 1.0 means "as spread out as the data",
    well below 1 means the candidates collapsed onto a few designs.
    """
    n = min(len(candidates), len(reference), max_n)
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    c = np.asarray(candidates)[rng.choice(len(candidates), n, replace=False)]
    r = np.asarray(reference)[rng.choice(len(reference), n, replace=False)]
    return mean_nn_distance(c) / mean_nn_distance(r)


def mae_against(predicted: np.ndarray, target: float) -> float:
    """Mean absolute deviation of predictions from the target (NaN when empty)."""
    p = np.asarray(predicted, dtype=np.float64)
    return float(np.abs(p - target).mean()) if len(p) else float("nan")
