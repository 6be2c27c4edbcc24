"""Design spaces: named, bounded parameters and the unit box every model works in.

Models (generators, surrogates, localization) see only unit-box coordinates
``u = (x - lower) / (upper - lower)``; physical units live at the edges (data files,
CSV output, structure builders). Keeping that conversion in one place is what lets a
second material plug in without touching the models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from agent.core.errors import ConfigError, DataError, DesignError

__all__ = ["Constraint", "DesignSpace", "Parameter"]


@dataclass(frozen=True)
class Parameter:
    """One design variable with closed bounds ``[lower, upper]`` in ``unit``."""

    name: str
    lower: float
    upper: float
    unit: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ConfigError(f"parameter name {self.name!r} must be a non-empty identifier")
        if not (np.isfinite(self.lower) and np.isfinite(self.upper)):
            raise ConfigError(f"parameter {self.name!r}: bounds must be finite numbers")
        if not self.lower < self.upper:
            raise ConfigError(
                f"parameter {self.name!r}: lower bound {self.lower} is not below "
                f"upper bound {self.upper} (reversed or empty bounds)"
            )


@dataclass(frozen=True)
class Constraint:
    """A physical validity rule beyond the box, e.g. "the three angles form a cell".

    ``check`` maps physical points ``(n, d)`` to a boolean mask ``(n,)`` of valid rows.
    """

    name: str
    check: Callable[[np.ndarray], np.ndarray]
    message: str


@dataclass(frozen=True)
class DesignSpace:
    """An ordered set of parameters plus constraints; converts to and from the unit box."""

    name: str
    parameters: tuple[Parameter, ...]
    constraints: tuple[Constraint, ...] = field(default=())

    def __post_init__(self) -> None:
        names = [p.name for p in self.parameters]
        if not names:
            raise ConfigError(f"design space {self.name!r} has no parameters")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"design space {self.name!r}: duplicate parameter names {dupes}")

    # -- description -------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def dim(self) -> int:
        return len(self.parameters)

    @property
    def lower(self) -> np.ndarray:
        return np.array([p.lower for p in self.parameters], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([p.upper for p in self.parameters], dtype=np.float64)

    @property
    def units(self) -> dict[str, str]:
        return {p.name: p.unit for p in self.parameters}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (constraints are code and are named only)."""
        return {
            "name": self.name,
            "parameters": [
                {"name": p.name, "lower": p.lower, "upper": p.upper, "unit": p.unit} for p in self.parameters
            ],
            "constraints": [c.name for c in self.constraints],
        }

    # -- conversion ----------------------------------------------------------------
    def as_array(self, X: Any) -> np.ndarray:
        """Coerce ``X`` to a float64 array of shape ``(n, dim)``; a single point is allowed."""
        arr = np.asarray(X.detach().cpu().numpy() if hasattr(X, "detach") else X, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise DesignError(
                f"design points for {self.name!r} must have shape (n, {self.dim}) "
                f"with columns {self.names}; got shape {tuple(np.shape(X))}"
            )
        return arr

    def to_unit(self, X: Any) -> np.ndarray:
        """Physical ``(n, d)`` -> unit box ``(n, d)``; does not validate."""
        return (self.as_array(X) - self.lower) / (self.upper - self.lower)

    def from_unit(self, U: Any) -> np.ndarray:
        """Unit box ``(n, d)`` -> physical ``(n, d)``; does not validate."""
        return self.lower + self.as_array(U) * (self.upper - self.lower)

    # -- validity ------------------------------------------------------------------
    def problems(self, X: Any, *, atol: float = 1e-9) -> list[str | None]:
        """Per row: ``None`` when valid, else the first problem found, in words."""
        arr = self.as_array(X)
        span = self.upper - self.lower
        out: list[str | None] = [None] * len(arr)
        finite = np.isfinite(arr).all(axis=1)
        below = arr < self.lower - atol * span
        above = arr > self.upper + atol * span
        masks = [c.check(np.where(finite[:, None], arr, self.lower)) for c in self.constraints]
        for i in range(len(arr)):
            if not finite[i]:
                bad = [n for n, v in zip(self.names, arr[i]) if not np.isfinite(v)]
                out[i] = f"non-finite value in {bad}"
            elif below[i].any() or above[i].any():
                j = int(np.argmax(below[i] | above[i]))
                p = self.parameters[j]
                out[i] = f"{p.name}={arr[i, j]:.6g} {p.unit} is outside [{p.lower:g}, {p.upper:g}]"
            else:
                for c, m in zip(self.constraints, masks):
                    if not m[i]:
                        out[i] = f"{c.name}: {c.message}"
                        break
        return out

    def valid_mask(self, X: Any, *, atol: float = 1e-9) -> np.ndarray:
        """Boolean ``(n,)``: finite, inside the bounds and satisfying every constraint."""
        arr = self.as_array(X)
        span = self.upper - self.lower
        ok = np.isfinite(arr).all(axis=1)
        safe = np.where(ok[:, None], arr, self.lower)
        ok &= ((safe >= self.lower - atol * span) & (safe <= self.upper + atol * span)).all(axis=1)
        for c in self.constraints:
            ok &= np.asarray(c.check(safe), dtype=bool)
        return ok

    def validate(self, X: Any, *, atol: float = 1e-9) -> np.ndarray:
        """Return ``X`` as ``(n, d)`` float64, or raise one `DesignError` naming the first bad row."""
        arr = self.as_array(X)
        if self.valid_mask(arr, atol=atol).all():
            return arr
        probs = self.problems(arr, atol=atol)
        bad = [i for i, p in enumerate(probs) if p is not None]
        raise DesignError(
            f"{len(bad)} of {len(arr)} design points are invalid for {self.name!r}; "
            f"first, row {bad[0]}: {probs[bad[0]]}"
        )

    def sample_unit(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` unit-box points drawn uniformly among the valid designs (rejection sampling)."""
        out: list[np.ndarray] = []
        while sum(len(o) for o in out) < n:
            u = rng.random((2 * n, self.dim))
            out.append(u[self.valid_mask(self.from_unit(u))])
        return np.vstack(out)[:n] if n > 0 else np.zeros((0, self.dim))

    # -- tables --------------------------------------------------------------------
    def from_frame(self, df: pd.DataFrame, *, source: str = "table") -> np.ndarray:
        """Pull the design columns out of a table, in order, naming any that are missing."""
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise DataError(
                f"{source}: missing design columns {missing} for {self.name!r} "
                f"(expected {self.names}, found {list(df.columns)})"
            )
        try:
            return df[self.names].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: design columns must be numeric ({exc})") from exc

    def to_frame(self, X: Any) -> pd.DataFrame:
        return pd.DataFrame(self.as_array(X), columns=self.names)

    @classmethod
    def box(cls, name: str, bounds: Sequence[tuple[str, float, float, str]]) -> DesignSpace:
        """Shorthand for a plain box: ``[(name, lower, upper, unit), ...]``."""
        return cls(name, tuple(Parameter(n, lo, hi, u) for n, lo, hi, u in bounds))
