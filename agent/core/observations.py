"""Observation tables: design points with their target values, validated once on entry.

Every model downstream trusts its inputs, so a table is checked here, completely, and a
bad one is refused with a single `DataError` that names the file and the first problem.
The table also owns the duplicate bookkeeping: the bundled MoS2 data repeats some design
points, and a repeated point on both sides of a train/test split would flatter any
model, so splits are made over groups of identical inputs, never over raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd

from agent.core.errors import ConfigError, DataError
from agent.core.space import DesignSpace

__all__ = ["DuplicateReport", "Observations", "read_csv_table", "validate_frame"]


DedupPolicy = Literal["exact", "mean", "error"]


@dataclass(frozen=True)
class DuplicateReport:
    """How often design inputs repeat; ``duplicate_rows`` could be dropped losslessly."""

    rows: int
    unique_inputs: int
    duplicate_rows: int  # repeats of an earlier row: same inputs, same target (within tol)
    conflicting_groups: int  # distinct inputs whose repeats disagree on the target
    conflicting_rows: int  # rows in those groups


def _label(frame: pd.DataFrame, pos: int) -> Any:
    return frame.index[pos]


def validate_frame(
    space: DesignSpace,
    frame: Any,
    target: str | None,
    source: str,
    lower_bound: float | None,
    upper_bound: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Check ``frame`` against ``space``; return ``(X, y)`` or raise one `DataError`.

    ``target=None`` checks designs alone (``y`` comes back empty).
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    cols = [*space.names, *([] if target is None else [target])]
    if frame.columns.duplicated().any():
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise DataError(f"{source}: duplicate column names {dupes}")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing} (expected {cols}, found {list(frame.columns)})")
    if len(frame) == 0:
        raise DataError(f"{source}: the table has no rows")
    numeric = [c for c in cols if c not in space.names or space.parameters[space.names.index(c)].kind != "categorical"]
    non_numeric = [
        c for c in numeric if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    if non_numeric:
        col = frame[non_numeric[0]]
        bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
        first = int(np.argmax(bad.to_numpy())) if bad.any() else 0
        raise DataError(
            f"{source}: non-numeric columns {non_numeric}; first bad value "
            f"{col.iloc[first]!r} in column {non_numeric[0]!r} at row {_label(frame, first)}"
        )
    design = space.from_frame(frame, source=source)  # category names -> positions, unknown names refused
    values = np.column_stack([design, frame[cols[space.dim :]].to_numpy(dtype=np.float64)])
    finite = np.isfinite(values)
    if not finite.all():
        parts = []
        for j in np.flatnonzero(~finite.all(axis=0)):
            rows = np.flatnonzero(~finite[:, j])
            parts.append(f"column {cols[j]!r} ({len(rows)} rows, first row {_label(frame, int(rows[0]))})")
        n_bad = int((~finite.all(axis=1)).sum())
        raise DataError(f"{source}: non-finite values (NaN or inf) in {n_bad} rows: {', '.join(parts)}")
    X, y = values[:, : space.dim], values[:, space.dim :].reshape(-1)
    valid = space.valid_mask(X)
    if not valid.all():
        bad_rows = np.flatnonzero(~valid)
        in_box = DesignSpace(space.name, space.parameters).valid_mask(X[bad_rows])
        first = int(bad_rows[0])
        why = space.problems(X[first : first + 1])[0]
        raise DataError(
            f"{source}: {len(bad_rows)} of {len(X)} rows are outside the design space "
            f"{space.name!r} ({int((~in_box).sum())} outside the bounds, "
            f"{int(in_box.sum())} violating constraints); first, row {_label(frame, first)}: {why}"
        )
    for bound, side, beyond in (
        (lower_bound, "below its physical lower", y < (lower_bound or 0.0)),
        (upper_bound, "above its physical upper", y > (upper_bound or 0.0)),
    ):
        if bound is not None and beyond.any():
            first = int(np.flatnonzero(beyond)[0])
            raise DataError(
                f"{source}: {int(beyond.sum())} rows have {target!r} {side} bound "
                f"{bound:g}; first, row {_label(frame, first)}: {target}={y[first]:g}"
            )
    return X, y


class Observations:
    """Design points (physical units) with one target column, validated on construction.

    Columns are the space's parameter names plus ``target``; extra columns are kept and
    travel through subsets and splits. Arrays handed out are fresh copies (writable, so
    torch can wrap them without warnings; editing one never changes the table).
    """

    def __init__(
        self,
        space: DesignSpace,
        frame: pd.DataFrame,
        target: str = "gap",
        source: str = "table",
        *,
        lower_bound: float | None = None,
        upper_bound: float | None = None,
    ) -> None:
        X, y = validate_frame(space, frame, target, source, lower_bound, upper_bound)
        self.space = space
        self.target = target
        self.source = source
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        self._frame = frame.reset_index(drop=True)
        if space.plain:
            self._frame[[*space.names, target]] = np.column_stack([X, y])
        else:  # tables keep the real values: category names, whole integers
            self._frame[space.names] = space.to_frame(X)
            self._frame[target] = y
        self._X = X.copy()
        self._y = y.copy()

    @classmethod
    def from_arrays(
        cls,
        space: DesignSpace,
        X: Any,
        y: Any,
        target: str = "gap",
        source: str = "arrays",
        *,
        lower_bound: float | None = None,
        upper_bound: float | None = None,
    ) -> Observations:
        """Build from physical ``X`` (n, d) and ``y`` (n,), e.g. fresh oracle results."""
        frame = space.to_frame(X)
        yy = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(yy) != len(frame):
            raise DataError(f"{source}: {len(frame)} design points but {len(yy)} target values")
        frame[target] = yy
        return cls(space, frame, target, source, lower_bound=lower_bound, upper_bound=upper_bound)

    # -- views ---------------------------------------------------------------------
    @property
    def X(self) -> np.ndarray:
        """Design points ``(n, d)`` in physical units, float64."""
        return self._X.copy()

    @property
    def U(self) -> np.ndarray:
        """Design points ``(n, d)`` in the unit box the models work in."""
        return self.space.to_unit(self._X)

    @property
    def y(self) -> np.ndarray:
        """Target values ``(n,)``, float64."""
        return self._y.copy()

    @property
    def frame(self) -> pd.DataFrame:
        """A copy of the table, extra columns included."""
        return self._frame.copy()

    def __len__(self) -> int:
        return len(self._X)

    def __repr__(self) -> str:
        return (
            f"Observations({len(self)} rows, space={self.space.name!r}, target={self.target!r}, source={self.source!r})"
        )

    def take(self, rows: Any) -> Observations:
        """The subset at integer positions (or boolean mask) ``rows``, order kept."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return Observations(
            self.space,
            self._frame.iloc[idx],
            self.target,
            self.source,
            lower_bound=self.lower_bound,
            upper_bound=self.upper_bound,
        )

    # -- duplicates ----------------------------------------------------------------
    def groups(self) -> np.ndarray:
        """Group id per row ``(n,)``: rows with exactly equal design inputs share an id.

        Ids follow the sorted order of the distinct inputs, so they do not depend on the
        order of the rows.
        """
        _, inverse = np.unique(self._X + 0.0, axis=0, return_inverse=True)  # +0.0: -0.0 == 0.0
        return np.asarray(inverse, dtype=np.int64).reshape(-1)

    def _group_stats(self, tol: float) -> pd.DataFrame:
        g = self.groups()
        stats = (
            pd.DataFrame({"g": g, "y": self._y, "pos": np.arange(len(self))})
            .groupby("g")
            .agg(size=("y", "size"), lo=("y", "min"), hi=("y", "max"), mean=("y", "mean"), first=("pos", "min"))
        )
        stats["conflict"] = (stats["size"] > 1) & (stats["hi"] - stats["lo"] > tol)
        return stats

    def duplicates_report(self, tol: float = 1e-6) -> DuplicateReport:
        """Count repeated inputs; targets closer than ``tol`` count as the same value."""
        s = self._group_stats(tol)
        multi = s[s["size"] > 1]
        conflict = multi[multi["conflict"]]
        return DuplicateReport(
            rows=len(self),
            unique_inputs=len(s),
            duplicate_rows=int((multi["size"] - 1)[~multi["conflict"]].sum()),
            conflicting_groups=len(conflict),
            conflicting_rows=int(conflict["size"].sum()),
        )

    def deduplicate(self, policy: DedupPolicy = "exact", *, tol: float = 1e-6) -> Observations:
        """One row per distinct design input; what to do with repeats depends on ``policy``.

        ``"exact"`` drops repeats whose targets agree within ``tol`` and refuses
        conflicting ones; ``"mean"`` keeps the first row with the group's mean target;
        ``"error"`` refuses any repeat. Kept rows stay in their original order.
        """
        if policy not in ("exact", "mean", "error"):
            raise ConfigError(f"unknown deduplication policy {policy!r}; use 'exact', 'mean' or 'error'")
        s = self._group_stats(tol)
        g = self.groups()
        if policy == "error" and (s["size"] > 1).any():
            first = s[s["size"] > 1].sort_values("first").iloc[0]
            rows = np.flatnonzero(g == first.name)
            raise DataError(
                f"{self.source}: {int((s['size'] - 1).sum())} rows repeat the design inputs "
                f"of an earlier row; first, rows {rows.tolist()} share {self._describe(rows[0])}"
            )
        if policy == "exact" and s["conflict"].any():
            bad = s[s["conflict"]].sort_values("first")
            rows = np.flatnonzero(g == bad.index[0])
            raise DataError(
                f"{self.source}: {len(bad)} design inputs have conflicting {self.target!r} "
                f"values (spread > {tol:g}); first, {self._describe(rows[0])} at rows "
                f"{rows.tolist()} has {self.target} = {self._y[rows].tolist()}"
            )
        keep = np.sort(s["first"].to_numpy())
        frame = self._frame.iloc[keep].copy()
        if policy == "mean":
            frame[self.target] = s.set_index("first").loc[keep, "mean"].to_numpy()
        return Observations(
            self.space, frame, self.target, self.source, lower_bound=self.lower_bound, upper_bound=self.upper_bound
        )

    def _describe(self, row: int) -> str:
        return self.space.describe(self._X[row])

    # -- splits --------------------------------------------------------------------
    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[Observations, Observations]:
        """Group-aware ``(train, test)`` split: no design input lands on both sides.

        Groups are shuffled with ``seed`` and taken into the test side until its row count
        is as close as possible to ``test_fraction * n`` (so within about one group).
        """
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
        g = self.groups()
        sizes = np.bincount(g)
        if len(sizes) < 2:
            raise DataError(f"{self.source}: cannot split a table with one distinct design input")
        order = np.random.default_rng(seed).permutation(len(sizes))
        cum = np.cumsum(sizes[order])
        k = int(np.argmin(np.abs(cum - test_fraction * len(self)))) + 1
        k = min(max(k, 1), len(sizes) - 1)
        in_test = np.zeros(len(sizes), dtype=bool)
        in_test[order[:k]] = True
        test = in_test[g]
        return self.take(~test), self.take(test)

    def split_groups(self, n_parts: int, seed: int = 0) -> list[Observations]:
        """Partition the groups into ``n_parts`` disjoint, row-balanced, non-empty parts.

        For independent validators trained on disjoint data: each shuffled group goes to
        the part with the fewest rows so far.
        """
        g = self.groups()
        sizes = np.bincount(g)
        if not 1 <= n_parts <= len(sizes):
            raise ConfigError(
                f"n_parts must be between 1 and the number of distinct inputs ({len(sizes)}), got {n_parts}"
            )
        order = np.random.default_rng(seed).permutation(len(sizes))
        part_of = np.empty(len(sizes), dtype=np.int64)
        load = np.zeros(n_parts, dtype=np.int64)
        for grp in order:
            p = int(np.argmin(load))
            part_of[grp] = p
            load[p] += sizes[grp]
        row_part = part_of[g]
        return [self.take(row_part == p) for p in range(n_parts)]


# -- loading -----------------------------------------------------------------------
def read_csv_table(handle: IO[bytes] | Path, source: str) -> pd.DataFrame:
    """The table, refusing a header that names a column twice (pandas would rename one ``a.1``)."""
    try:
        header = pd.read_csv(handle, header=None, nrows=1, dtype=str)
        if not isinstance(handle, Path):
            handle.seek(0)
        frame = pd.read_csv(handle)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{source}: not a readable CSV table ({exc})") from exc
    names = [str(n) for n in header.iloc[0]] if len(header) else []
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise DataError(f"{source}: duplicate column names {dupes}")
    return frame
