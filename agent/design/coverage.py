"""Families of solutions: which distinct regions of the target's solution set hits cover.

"Diverse" has meant "0.1 apart in the unit box", a rule one basin can satisfy many
times over. A scientist asks instead how many *distinct ways* to reach the target a
campaign found (compressive or tensile, shear-driven, field-assisted …). Here the
solution set -- every design known or believed to reach the target -- is split into
``k`` families by k-means in the unit box (a fixed seed and several restarts, so the
split is reproducible), and a hit covers the family whose centre is nearest to it.
The count depends on ``k``, so callers report it for more than one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans

from agent.core.errors import DataError

__all__ = ["Families", "find_families"]


@dataclass(frozen=True)
class Families:
    """``centres (k, d)`` of the families in the unit box, and ``sizes (k,)``: how many designs
    of the solution set each holds."""

    centres: np.ndarray
    sizes: np.ndarray

    @property
    def k(self) -> int:
        return len(self.centres)

    def assign(self, U: np.ndarray) -> np.ndarray:
        """The family ``(n,)`` of each unit-box design ``U (n, d)`` (its nearest centre)."""
        U = np.asarray(U, dtype=np.float64).reshape(-1, self.centres.shape[1])
        if len(U) == 0:
            return np.zeros(0, dtype=int)
        return np.asarray(cKDTree(self.centres).query(U)[1], dtype=int)

    def covered(self, U: np.ndarray) -> np.ndarray:
        """The sorted families holding at least one of the designs ``U (n, d)``."""
        return np.unique(self.assign(U))

    def curve(self, U: np.ndarray) -> list[int]:
        """Families covered after each of the designs ``U (n, d)``, taken in order."""
        seen: set[int] = set()
        out = []
        for f in self.assign(U):
            seen.add(int(f))
            out.append(len(seen))
        return out


def find_families(solutions: np.ndarray, k: int, *, seed: int = 0) -> Families:
    """Split the solution set ``solutions (n, d)`` (unit box) into ``k`` families (k-means,
    10 restarts from ``seed``). Refuses a set smaller than ``k``."""
    U = np.asarray(solutions, dtype=np.float64)
    if U.ndim != 2 or len(U) < k or k < 1:
        raise DataError(f"cannot split {len(U)} solutions into {k} families (need at least {k})")
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(U)
    sizes = np.bincount(model.labels_, minlength=k)
    return Families(np.asarray(model.cluster_centers_, dtype=np.float64), sizes)
