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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from agent.core.errors import DataError

__all__ = ["Families", "believed_families", "families_from_json", "families_to_json", "find_families"]


@dataclass(frozen=True)
class Families:
    """``centres (k, d)`` of the families in the unit box, and ``sizes (k,)``: how many designs
    of the solution set each holds."""

    centres: np.ndarray
    sizes: np.ndarray
    radius: float = 0.0  # mean distance of a member to its family's centre

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

    def load(self, U: np.ndarray) -> np.ndarray:
        """How many of the designs ``U (n, d)`` each family holds ``(k,)``."""
        return np.bincount(self.assign(U), minlength=self.k)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists for a JSON file (centres rounded to 1e-6 of the unit box)."""
        return {
            "centres": np.round(self.centres, 6).tolist(),
            "sizes": [int(s) for s in self.sizes],
            "radius": round(float(self.radius), 6),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Families:
        centres = np.asarray(data["centres"], dtype=np.float64)
        sizes = np.asarray(data["sizes"], dtype=int)
        if centres.ndim != 2 or len(centres) == 0 or sizes.shape != (len(centres),):
            raise DataError(f"families: {len(centres)} centres and {sizes.shape} sizes do not match")
        return cls(centres, sizes, float(data.get("radius", 0.0)))

    def curve(self, U: np.ndarray) -> list[int]:
        """Families covered after each of the designs ``U (n, d)``, taken in order."""
        seen: set[int] = set()
        out = []
        for f in self.assign(U):
            seen.add(int(f))
            out.append(len(seen))
        return out


def families_to_json(families: Sequence[Families | None]) -> list[dict[str, Any] | None]:
    """Per target families as plain JSON data (``None`` for a target without them)."""
    return [f.to_dict() if f is not None else None for f in families]


def families_from_json(data: Sequence[dict[str, Any] | None]) -> tuple[Families | None, ...]:
    """`families_to_json`'s data read back (a `DataError` when an entry is malformed)."""
    return tuple(Families.from_dict(f) if f else None for f in data)


def find_families(solutions: np.ndarray, k: int, *, seed: int = 0) -> Families:
    """Split the solution set ``solutions (n, d)`` (unit box) into ``k`` families (k-means,
    10 restarts from ``seed``). Refuses a set smaller than ``k``."""
    U = np.asarray(solutions, dtype=np.float64)
    if U.ndim != 2 or len(U) < k or k < 1:
        raise DataError(f"cannot split {len(U)} solutions into {k} families (need at least {k})")
    from sklearn.cluster import KMeans  # scikit-learn (~1 s to import) only when families are drawn

    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(U)
    sizes = np.bincount(model.labels_, minlength=k)
    centres = np.asarray(model.cluster_centers_, dtype=np.float64)
    radius = float(np.linalg.norm(U - centres[model.labels_], axis=1).mean())
    return Families(centres, sizes, radius)


def believed_families(U: np.ndarray, believed: np.ndarray, k: int, *, seed: int = 0) -> Families | None:
    """The families of the designs a model believes reach the target: the rows of ``U (n, d)``
    where ``believed (n,)`` holds, split into ``k`` (fewer when fewer believed designs exist,
    ``None`` when there are none). ``U`` should spread evenly over the space (uniform draws or
    the oracle's pool): k-means splits what it is given, so a sample crowded in one basin
    would split that basin instead of finding the others."""
    inside = np.asarray(U, dtype=np.float64)[np.asarray(believed, dtype=bool)]
    if len(inside) == 0:
        return None
    distinct = len(np.unique(inside, axis=0))  # k-means needs as many distinct points as families
    return find_families(inside, min(k, distinct), seed=seed)
