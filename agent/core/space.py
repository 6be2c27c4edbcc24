"""Design spaces: named, bounded parameters and the unit box every model works in.

Models (generators, surrogates, localization) see only unit-box coordinates
``u = (x - lower) / (upper - lower)``; physical units live at the edges (data files,
CSV output, structure builders). Keeping that conversion in one place is what lets a
second material plug in without touching the models. A recipe's integers and
categories are relaxed here too (scaled integers, one-hot blocks) and snapped back
here, so the models stay continuous and people only ever see real values.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from agent.core.errors import ConfigError, DataError, DesignError
from agent.core.parameters import KINDS, Constraint, Kind, Parameter, linear_constraint

__all__ = ["KINDS", "Constraint", "DesignSpace", "Kind", "Parameter", "linear_constraint"]


@dataclass(frozen=True)
class DesignSpace:
    """An ordered set of parameters plus constraints; converts to and from the unit box.

    A design is a row of ``dim`` floats in physical units (an integer's value, a
    category's position). Models see its relaxation, ``unit_dim`` columns in [0, 1]:
    a continuous parameter scaled (log10 first when it has a log scale), an integer
    scaled like a continuous one, a category as a one-hot block. `from_unit` snaps a
    relaxed point back to a real design (rounding, the block's largest entry).
    """

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
        """Parameters: the width of a design in physical units."""
        return len(self.parameters)

    @property
    def unit_dim(self) -> int:
        """Width of the unit box the models see (``dim`` for a space of plain numbers)."""
        return sum(p.width for p in self.parameters)

    @functools.cached_property
    def plain(self) -> bool:
        """Every parameter continuous on a linear scale: the unit box is the scaled box."""
        return all(p.kind == "continuous" and not p.log for p in self.parameters)

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
        params = []
        for p in self.parameters:
            entry: dict[str, Any] = {"name": p.name, "lower": p.lower, "upper": p.upper, "unit": p.unit}
            if not (p.kind == "continuous" and not p.log):
                entry |= {"type": p.kind, "log": p.log} | ({"values": list(p.values)} if p.values else {})
            params.append(entry)
        return {"name": self.name, "parameters": params, "constraints": [c.name for c in self.constraints]}

    # -- conversion ----------------------------------------------------------------
    def as_array(self, X: Any) -> np.ndarray:
        """Coerce ``X`` to a float64 array of shape ``(n, dim)``; a single point is allowed."""
        return self._shaped(X, self.dim, "design points")

    def _shaped(self, X: Any, width: int, what: str) -> np.ndarray:
        arr = np.asarray(X.detach().cpu().numpy() if hasattr(X, "detach") else X, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != width:
            cols = self.names if width == self.dim else f"{width} unit-box columns"
            raise DesignError(
                f"{what} for {self.name!r} must have shape (n, {width}) with columns {cols}; "
                f"got shape {tuple(np.shape(X))}"
            )
        return arr

    def _scaled(self) -> tuple[np.ndarray, np.ndarray]:
        """Per parameter, the lower bound and span of its unit coordinate (log10 for log scales)."""
        lo = np.array([np.log10(p.lower) if p.log else p.lower for p in self.parameters])
        hi = np.array([np.log10(p.upper) if p.log else p.upper for p in self.parameters])
        return lo, hi - lo

    def to_unit(self, X: Any) -> np.ndarray:
        """Physical ``(n, dim)`` -> unit box ``(n, unit_dim)``; does not validate."""
        arr = self.as_array(X)
        if self.plain:
            return (arr - self.lower) / (self.upper - self.lower)
        lo, span = self._scaled()
        cols: list[np.ndarray] = []
        for j, p in enumerate(self.parameters):
            if p.kind == "categorical":
                codes = np.nan_to_num(arr[:, j], nan=-1.0)
                cols.append((codes[:, None] == np.arange(p.width)[None, :]).astype(np.float64))
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    v = np.log10(arr[:, j]) if p.log else arr[:, j]
                cols.append(((v - lo[j]) / span[j])[:, None])
        return np.hstack(cols)

    def from_unit(self, U: Any) -> np.ndarray:
        """Unit box ``(n, unit_dim)`` -> physical ``(n, dim)``, integers rounded and each
        category block read as its largest entry; does not validate."""
        arr = self._shaped(U, self.unit_dim, "unit-box points")
        if self.plain:
            return self.lower + arr * (self.upper - self.lower)
        lo, span = self._scaled()
        out = np.empty((len(arr), self.dim))
        col = 0
        for j, p in enumerate(self.parameters):
            block = arr[:, col : col + p.width]
            if p.kind == "categorical":
                out[:, j] = np.argmax(block, axis=1)
            else:
                v = lo[j] + block[:, 0] * span[j]
                out[:, j] = np.round(v) if p.kind == "integer" else (10.0**v if p.log else v)
            col += p.width
        return out

    def snap_unit(self, U: Any) -> np.ndarray:
        """Relaxed points ``(n, unit_dim)`` moved onto real designs: integers rounded, one-hot
        blocks made one-hot; continuous coordinates are left exactly as they are."""
        arr = self._shaped(U, self.unit_dim, "unit-box points").copy()
        if self.plain:
            return arr
        lo, span = self._scaled()
        col = 0
        for j, p in enumerate(self.parameters):
            block = arr[:, col : col + p.width]
            if p.kind == "categorical":
                arr[:, col : col + p.width] = np.eye(p.width)[np.argmax(block, axis=1)]
            elif p.kind == "integer":
                arr[:, col] = (np.round(lo[j] + block[:, 0] * span[j]) - lo[j]) / span[j]
            col += p.width
        return arr

    # -- validity ------------------------------------------------------------------
    def _off_grid(self, arr: np.ndarray) -> np.ndarray:
        """``(n, dim)`` mask of integer or categorical entries that are not whole numbers."""
        discrete = np.array([p.kind != "continuous" for p in self.parameters])
        with np.errstate(invalid="ignore"):
            return discrete[None, :] & (np.abs(arr - np.round(arr)) > 1e-9)

    def problems(self, X: Any, *, atol: float = 1e-9) -> list[str | None]:
        """Per row: ``None`` when valid, else the first problem found, in words."""
        arr = self.as_array(X)
        span = self.upper - self.lower
        out: list[str | None] = [None] * len(arr)
        finite = np.isfinite(arr).all(axis=1)
        below = arr < self.lower - atol * span
        above = arr > self.upper + atol * span
        off = self._off_grid(arr)
        masks = [c.check(np.where(finite[:, None], arr, self.lower)) for c in self.constraints]
        for i in range(len(arr)):
            if not finite[i]:
                bad = [n for n, v in zip(self.names, arr[i]) if not np.isfinite(v)]
                out[i] = f"non-finite value in {bad}"
            elif below[i].any() or above[i].any():
                j = int(np.argmax(below[i] | above[i]))
                p = self.parameters[j]
                out[i] = f"{p.name}={arr[i, j]:.6g} {p.unit} is outside [{p.lower:g}, {p.upper:g}]"
            elif off[i].any():
                p = self.parameters[int(np.argmax(off[i]))]
                out[i] = f"{p.name}={arr[i, self.names.index(p.name)]:.6g} is not a whole number ({p.kind})"
            else:
                for c, m in zip(self.constraints, masks):
                    if not m[i]:
                        out[i] = f"{c.name}: {c.message}"
                        break
        return out

    def valid_mask(self, X: Any, *, atol: float = 1e-9) -> np.ndarray:
        """Boolean ``(n,)``: finite, inside the bounds, on the grid of discrete parameters and
        satisfying every constraint."""
        arr = self.as_array(X)
        span = self.upper - self.lower
        ok = np.isfinite(arr).all(axis=1)
        safe = np.where(ok[:, None], arr, self.lower)
        ok &= ((safe >= self.lower - atol * span) & (safe <= self.upper + atol * span)).all(axis=1)
        if not self.plain:
            ok &= ~self._off_grid(safe).any(axis=1)
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
        """``n`` unit-box points ``(n, unit_dim)`` of valid designs drawn uniformly (rejection
        sampling; uniform in log10 on a log scale, each integer and category equally likely)."""
        out: list[np.ndarray] = []
        while sum(len(o) for o in out) < n:
            if self.plain:
                u = rng.random((2 * n, self.dim))
                out.append(u[self.valid_mask(self.from_unit(u))])
                continue
            X = self.from_unit(self._relaxed_draw(rng, 2 * n))
            out.append(self.to_unit(X[self.valid_mask(X)]))
        return np.vstack(out)[:n] if n > 0 else np.zeros((0, self.unit_dim))

    def _relaxed_draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        cols: list[np.ndarray] = []
        for p in self.parameters:
            if p.kind == "categorical":
                cols.append(np.eye(p.width)[rng.integers(p.width, size=n)])
            elif p.kind == "integer":
                k = rng.integers(int(p.lower), int(p.upper) + 1, size=n)
                cols.append(((k - p.lower) / (p.upper - p.lower))[:, None])
            else:
                cols.append(rng.random((n, 1)))
        return np.hstack(cols)

    # -- tables --------------------------------------------------------------------
    def from_frame(self, df: pd.DataFrame, *, source: str = "table") -> np.ndarray:
        """Pull the design columns out of a table, in order, naming any that are missing.

        Category columns hold the categories' names; a name not in the list is refused."""
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise DataError(
                f"{source}: missing design columns {missing} for {self.name!r} "
                f"(expected {self.names}, found {list(df.columns)})"
            )
        out = np.empty((len(df), self.dim))
        for j, p in enumerate(self.parameters):
            col = df[p.name]
            if p.kind == "categorical":
                out[:, j] = self._codes(p, col, source)
                continue
            if len(col) and (not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                is_number = [isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_) for v in col]
                first = is_number.index(False) if False in is_number else 0
                raise DataError(
                    f"{source}: non-numeric values in column {p.name!r}; first {col.iloc[first]!r} "
                    f"at row {df.index[first]}"
                )
            out[:, j] = col.to_numpy(dtype=np.float64)
        return out

    @staticmethod
    def _codes(p: Parameter, col: pd.Series, source: str) -> np.ndarray:
        index = {v: i for i, v in enumerate(p.values)}
        words = [v if isinstance(v, str) else str(v) for v in col.tolist()]
        unknown = [i for i, w in enumerate(words) if w not in index]
        if unknown:
            first = unknown[0]
            raise DataError(
                f"{source}: column {p.name!r} has {len(unknown)} values not among its categories "
                f"{list(p.values)}; first {col.iloc[first]!r} at row {col.index[first]}"
            )
        return np.array([index[w] for w in words], dtype=np.float64)

    def to_frame(self, X: Any) -> pd.DataFrame:
        """Designs as a table in physical units: category names, whole integers."""
        arr = self.as_array(X)
        if self.plain:
            return pd.DataFrame(arr, columns=self.names)
        cols: dict[str, Any] = {}
        for j, p in enumerate(self.parameters):
            if p.kind == "categorical":
                cols[p.name] = [p.values[int(v)] if 0 <= v < p.width else None for v in arr[:, j]]
            elif p.kind == "integer" and np.isfinite(arr[:, j]).all():
                cols[p.name] = np.round(arr[:, j]).astype(np.int64)
            else:
                cols[p.name] = arr[:, j]
        return pd.DataFrame(cols, columns=self.names)

    def to_rows(self, X: Any) -> list[dict[str, Any]]:
        """Designs as JSON-ready dicts (what a handle, the ledger and an oracle see): floats,
        ints for integer parameters and names for categories."""
        arr = self.as_array(X)
        out = []
        for row in arr:
            out.append({p.name: self._python(p, v) for p, v in zip(self.parameters, row)})
        return out

    @staticmethod
    def _python(p: Parameter, v: float) -> Any:
        if p.kind == "categorical":
            return p.values[int(v)]
        return round(v) if p.kind == "integer" else float(v)

    def from_rows(self, rows: Sequence[Mapping[str, Any]], *, source: str = "designs") -> np.ndarray:
        """Dicts of ``name -> value`` (as `to_rows` writes them) -> physical ``(n, dim)``."""
        if not rows:
            return np.zeros((0, self.dim))
        for i, row in enumerate(rows):
            if missing := [n for n in self.names if n not in row]:
                raise DataError(f"{source}: design {i} lacks {missing} (a design of {self.name!r} has {self.names})")
        return self.from_frame(pd.DataFrame.from_records(list(rows), columns=self.names), source=source)

    def describe(self, x: Any) -> str:
        """One design in words, e.g. ``temperature=80 °C, catalyst='Pd'``."""
        return ", ".join(p.describe(v) for p, v in zip(self.parameters, self.as_array(x)[0]))

    @classmethod
    def box(cls, name: str, bounds: Sequence[tuple[str, float, float, str]]) -> DesignSpace:
        """Shorthand for a plain box: ``[(name, lower, upper, unit), ...]``."""
        return cls(name, tuple(Parameter(n, lo, hi, u) for n, lo, hi, u in bounds))
