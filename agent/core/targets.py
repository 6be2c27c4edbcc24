"""What a campaign designs for: a range of the property, closed, possibly one-sided.

``value ± window`` is the band-gap habit; a lab asks "yield at least 0.8" or "between
0.5 and 0.7". Both are a `TargetRange` ``[lo, hi]`` (an open side is infinite), so the
acquisition's window probability, hit counting, diversity and the report share one
rule: a measurement ``y`` is a hit when ``lo <= y <= hi``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.core.errors import ConfigError

__all__ = ["HIT_TOL", "TargetRange"]

HIT_TOL = 1e-12  # a value on the edge of the range is a hit, whatever the float rounding


@dataclass(frozen=True)
class TargetRange:
    """``[lo, hi]`` of the property (``-inf``/``inf`` for an open side); ``value`` and
    ``window`` are what a ``value ± window`` target was written with (``None`` for a range)."""

    lo: float
    hi: float
    value: float | None = None
    window: float | None = None

    def __post_init__(self) -> None:
        if math.isnan(self.lo) or math.isnan(self.hi) or not self.lo < self.hi:
            raise ConfigError(f"target range [{self.lo:g}, {self.hi:g}] is empty or reversed")
        if math.isinf(self.lo) and math.isinf(self.hi):
            raise ConfigError("a target range needs at least one finite side")

    @classmethod
    def around(cls, value: float, window: float) -> TargetRange:
        return cls(value - window, value + window, value, window)

    @property
    def one_sided(self) -> bool:
        return math.isinf(self.lo) or math.isinf(self.hi)

    def contains(self, y: np.ndarray) -> np.ndarray:
        """Boolean mask ``(n,)`` of hits (NaN is never one)."""
        arr = np.asarray(y, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            if self.value is not None and self.window is not None:  # the written rule, to the last bit
                return np.asarray(np.abs(arr - self.value) <= self.window + HIT_TOL)
            return np.asarray((arr >= self.lo - HIT_TOL) & (arr <= self.hi + HIT_TOL))

    def distance(self, y: np.ndarray) -> np.ndarray:
        """How far each ``y`` is from the range (0 inside; from the centre for ``value ± window``)."""
        arr = np.asarray(y, dtype=np.float64)
        if self.value is not None:
            return np.abs(arr - self.value)
        return np.maximum(np.maximum(self.lo - arr, arr - self.hi), 0.0)

    def anchor(self, known: np.ndarray, floor: float | None = None, ceiling: float | None = None) -> float:
        """The property value a conditional generator is asked for: the centre of the range;
        for an open side, the middle between the finite edge and the furthest value known
        beyond it (the physical ceiling or floor when it is nearer), the edge itself when
        nothing known lies beyond."""
        if self.value is not None:
            return self.value
        if not self.one_sided:
            return 0.5 * (self.lo + self.hi)
        if math.isinf(self.lo):  # "at most hi" is "at least -hi" for -y: mirror it
            flip = TargetRange(-self.hi, math.inf)
            return -flip.anchor(
                -np.asarray(known), None if ceiling is None else -ceiling, None if floor is None else -floor
            )
        y = np.asarray(known, dtype=np.float64)
        y = y[np.isfinite(y)]
        far = float(y.max()) if len(y) else self.lo
        if ceiling is not None:
            far = min(far, ceiling)
        return 0.5 * (self.lo + max(far, self.lo))

    def label(self, unit: str = "") -> str:
        """``1 ± 0.1 eV``, ``≥ 0.8``, ``0.5–0.7 %``."""
        window = f" ± {self.window:g}" if self.window is not None else ""
        return self._spelled(window, "≥ ", "≤ ", "–") + (f" {unit}" if unit else "")

    def slug(self) -> str:
        """A file-name-safe label: ``1``, ``ge0.8``, ``le0.2``, ``0.5-0.7``."""
        return self._spelled("", "ge", "le", "-")

    def _spelled(self, window: str, at_least: str, at_most: str, dash: str) -> str:
        if self.value is not None:
            return f"{self.value:g}{window}"
        if math.isinf(self.hi):
            return f"{at_least}{self.lo:g}"
        if math.isinf(self.lo):
            return f"{at_most}{self.hi:g}"
        return f"{self.lo:g}{dash}{self.hi:g}"
