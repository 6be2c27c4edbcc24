"""Two-dimensional UMAP embeddings of designs (umap-learn), fitted once per report.

One embedding holds the data sample and both switching sets together, so the design
space map (Fig. 2c) and the switching map (Fig. 6) share coordinates: a candidate
lands where data like it lie. Inputs are unit-box designs, every parameter on the same
scale. ``random_state`` fixes the result (and makes umap-learn run single-threaded).
umap-learn compiles its numba kernels on the first fit in a process (about 10 s on a
small machine); later fits of a few thousand points take a few seconds.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["embed", "subsample"]


def subsample(n: int, at_most: int, seed: int) -> np.ndarray:
    """Sorted row indices: all ``n`` rows, or a seeded random ``at_most`` of them."""
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=at_most, replace=False))


def embed(U: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, epochs: int = 200) -> np.ndarray:
    """``(n, 2)`` UMAP coordinates of unit-box designs ``U (n, d)``; tiny inputs are laid out directly."""
    U = np.asarray(U, dtype=np.float64)
    if len(U) == 0:
        return np.zeros((0, 2))
    if len(U) <= max(4, n_neighbors // 3):  # too few points for a neighbour graph: keep two coordinates
        return U[:, :2].copy() if U.shape[1] >= 2 else np.hstack([U, np.zeros((len(U), 1))])
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" and numba notices
        model = umap.UMAP(
            n_components=2,
            n_neighbors=min(n_neighbors, len(U) - 1),
            min_dist=0.1,
            n_epochs=epochs,
            random_state=seed,
        )
        return np.asarray(model.fit_transform(U), dtype=np.float64)
