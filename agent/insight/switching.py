"""Metal–insulator switches: the smallest design change that takes a cell from one target to another.

Given designs believed to sit at target ``t0`` (e.g. 0 eV, metals) and designs at ``t1``
(e.g. 1.0 eV), a *switching pair* is one design from each set; the smaller the change
between them, the easier the switch is to drive (MatDesINNe, Fig. 6 and its discussion).

Metric. The distance between two designs is the Euclidean distance in the design
space's unit box (``DesignSpace.to_unit``), optionally weighted per parameter. The unit
box is the natural common currency here: every parameter's range is the range the data
and the models cover, so for MoS2 (each cell parameter ±20 % of its unstrained value,
field ±1 V/Å) 0.025 units is 1 % strain along a, b or c, 1 % of an angle (0.9° of α or
β, 1.2° of γ) or 0.05 V/Å of field. It is also the metric the campaign uses for its
``min_distance``, so "close" means the same thing in the report as in the loop.
Set a parameter's weight to 0 to make it free (e.g. a field that is easy to apply).

Ranking. Pairs are taken greedily by distance with each design used at most once
(``exclusive``), so one design near the boundary cannot fill the whole table.

Evidence. A design's membership of a window is either measured (the campaign's oracle
already answered for it: `with_measurements`) or predicted by a model, either by its
mean (``|mean - t| <= w``) or, with ``min_probability``, by the probability it gives the
window under its Gaussian posterior (`window_probability`). The probability rule lets an
honest σ veto a mean that sits inside the window by luck; a measurement overrides both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.special import ndtr

from agent.core.errors import DataError, UnknownNameError
from agent.core.space import DesignSpace
from agent.insight.strain import cell_reference

__all__ = [
    "CHANGE_MIN_SHARE",
    "CHANGE_MIN_UNIT",
    "Predictor",
    "describe_change",
    "design_matrix",
    "end_designs",
    "find_pairs",
    "in_window_candidates",
    "pair_table",
    "target_windows",
    "verify_pairs",
    "window_mask",
    "window_probability",
    "with_measurements",
]

# A component of a change is named in its sentence when its (weighted) unit-box change is
# at least CHANGE_MIN_UNIT (0.5 % strain, 0.45° of alpha, 0.025 V/Å for MoS2) and at least
# CHANGE_MIN_SHARE of the largest component: the sentence says what drives the switch.
CHANGE_MIN_UNIT = 0.0125
CHANGE_MIN_SHARE = 0.25
_MINUS = "\u2212"
_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ"}
_LABELS = {"efield": "field"}


class Predictor(Protocol):
    """What verification needs of a surrogate: mean and σ ``(n,)`` each for unit-box ``U (n, d)``."""

    def predict(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def design_matrix(designs: pd.DataFrame | np.ndarray, space: DesignSpace) -> np.ndarray:
    """Physical designs ``(n, d)`` from a frame with the space's columns or an array in its order."""
    if isinstance(designs, pd.DataFrame):
        return space.from_frame(designs, source="designs")
    arr = np.asarray(designs, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, space.dim))
    return space.as_array(arr)


def _weights(space: DesignSpace, weights: Mapping[str, float] | None) -> np.ndarray:
    w = np.ones(space.dim)
    for name, value in (weights or {}).items():
        if name not in space.names:
            raise DataError(f"weight for unknown parameter {name!r}; parameters are {space.names}")
        if not (np.isfinite(value) and value >= 0):
            raise DataError(f"weight of {name!r} must be a finite number >= 0, got {value}")
        w[space.names.index(name)] = float(value)
    return w


def find_pairs(
    X0: np.ndarray,
    X1: np.ndarray,
    space: DesignSpace,
    *,
    top: int = 20,
    weights: Mapping[str, float] | None = None,
    exclusive: bool = True,
) -> list[tuple[int, int, float]]:
    """The ``top`` closest pairs ``(i0, i1, distance)`` between physical ``X0 (n0, d)`` and ``X1 (n1, d)``.

    Greedy by distance; with ``exclusive`` each row of ``X0`` and of ``X1`` appears at most
    once. Exact, without the full ``n0 x n1`` matrix: when the m-th pair is chosen at most
    m - 1 < ``top`` rows of ``X0`` are taken, so each ``X1`` row's best free partner is
    among its ``top`` nearest. Ties break by ``(i1, i0)`` so the result is deterministic.
    """
    if top < 1:
        raise DataError(f"top must be a positive integer, got {top}")
    X0, X1 = design_matrix(X0, space), design_matrix(X1, space)
    if not len(X0) or not len(X1):
        return []
    w = _weights(space, weights)
    U0, U1 = space.to_unit(X0) * w, space.to_unit(X1) * w
    k = min(top, len(U0))
    dist, idx = cKDTree(U0).query(U1, k=k)
    dist, idx = dist.reshape(len(U1), k), idx.reshape(len(U1), k)
    i1 = np.repeat(np.arange(len(U1)), k)
    order = np.lexsort((idx.ravel(), i1, dist.ravel()))
    used0: set[int] = set()
    used1: set[int] = set()
    out: list[tuple[int, int, float]] = []
    for e in order:
        a, b = int(idx.ravel()[e]), int(i1[e])
        if exclusive and (a in used0 or b in used1):
            continue
        used0.add(a)
        used1.add(b)
        out.append((a, b, float(dist.ravel()[e])))
        if len(out) == top:
            break
    return out


def _signed(v: float, digits: int) -> str:
    text = f"{abs(v):.{digits}f}"
    if float(text) == 0.0:
        return text
    return ("+" if v > 0 else _MINUS) + text


def describe_change(
    x0: np.ndarray,
    x1: np.ndarray,
    space: DesignSpace,
    *,
    material: str | None = None,
    weights: Mapping[str, float] | None = None,
    max_terms: int = 4,
) -> str:
    """The change ``x0 -> x1`` (physical ``(d,)`` each) as a short sentence, largest components first.

    Lengths with a reference cell read as strain in percentage points of the unstrained
    length ("+6.1 % strain along b, −7.0 % along c"), angles in degrees ("+2.4° in γ"),
    anything else in its own unit ("+0.82 V/Å field"). Only components passing
    `CHANGE_MIN_UNIT` and `CHANGE_MIN_SHARE` (weighted unit-box change) are named, at most
    ``max_terms``; "no change" when none is.
    """
    x0, x1 = space.as_array(x0)[0], space.as_array(x1)[0]
    try:
        ref = cell_reference(material or space.name)
    except UnknownNameError:
        ref = None  # no unstrained cell known: lengths read in Å
    du = np.abs(space.to_unit(x1)[0] - space.to_unit(x0)[0]) * _weights(space, weights)
    if not len(du) or du.max() < CHANGE_MIN_UNIT:
        return "no change"
    keep = [j for j in np.argsort(-du, kind="stable") if du[j] >= max(CHANGE_MIN_UNIT, CHANGE_MIN_SHARE * du.max())]
    terms: list[str] = []
    said_strain = False
    for j in keep[:max_terms]:
        p = space.parameters[j]
        delta = float(x1[j] - x0[j])
        if p.unit == "Å" and ref is not None and p.name in ("a", "b", "c"):
            pct = _signed(100.0 * delta / ref.value(p.name), 1)
            terms.append(f"{pct} % {'along' if said_strain else 'strain along'} {p.name}")
            said_strain = True
        elif p.unit == "deg":
            terms.append(f"{_signed(delta, 1)}° in {_GREEK.get(p.name, p.name)}")
        else:
            unit = f" {p.unit}" if p.unit else ""
            terms.append(f"{_signed(delta, 2)}{unit} {_LABELS.get(p.name, p.name)}")
    return ", ".join(terms)


def pair_table(
    X0: np.ndarray,
    X1: np.ndarray,
    pairs: list[tuple[int, int, float]],
    space: DesignSpace,
    *,
    material: str | None = None,
    weights: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per pair: ``rank, distance, change, index_0, index_1``, then ``<name>_0`` and ``<name>_1``.

    ``index_*`` are row positions in ``X0``/``X1``; design columns are in physical units.
    """
    X0, X1 = design_matrix(X0, space), design_matrix(X1, space)
    i0 = np.array([p[0] for p in pairs], dtype=int)
    i1 = np.array([p[1] for p in pairs], dtype=int)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, len(pairs) + 1),
            "distance": [p[2] for p in pairs],
            "change": [
                describe_change(X0[a], X1[b], space, material=material, weights=weights) for a, b in zip(i0, i1)
            ],
            "index_0": i0,
            "index_1": i1,
        }
    )
    ends = [
        pd.DataFrame(X[i].reshape(-1, space.dim), columns=space.names).add_suffix(s)
        for X, i, s in ((X0, i0, "_0"), (X1, i1, "_1"))
    ]
    return pd.concat([table, *ends], axis=1)


def end_designs(table: pd.DataFrame, space: DesignSpace, end: int) -> np.ndarray:
    """The physical designs ``(n, d)`` at end ``end`` (0 or 1) of each pair of a `pair_table`."""
    return table[[f"{n}_{end}" for n in space.names]].to_numpy(dtype=np.float64).reshape(-1, space.dim)


def target_windows(windows: float | tuple[float, float]) -> tuple[float, float]:
    """``(w0, w1)`` from one window for both ends or a pair; each must be >= 0."""
    w = (float(windows), float(windows)) if isinstance(windows, int | float) else (float(windows[0]), float(windows[1]))
    if min(w) < 0:
        raise DataError(f"windows must be >= 0, got {w}")
    return w


def window_probability(mean: np.ndarray, std: np.ndarray, target: float, window: float) -> np.ndarray:
    """``P(|y - target| <= window)`` for ``y ~ N(mean, std²)``, ``(n,)``; a step (0 or 1) where σ is 0."""
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    inside = np.abs(mean - target) <= window + 1e-12
    s = np.where(std > 0, std, 1.0)
    p = ndtr((target + window - mean) / s) - ndtr((target - window - mean) / s)
    return np.asarray(np.where(std > 0, np.clip(p, 0.0, 1.0), inside.astype(np.float64)), dtype=np.float64)


def window_mask(
    mean: np.ndarray,
    std: np.ndarray,
    target: float,
    window: float,
    max_sigma: float | None,
    min_probability: float | None = None,
) -> np.ndarray:
    """Boolean ``(n,)``: the design counts as in the window by the model.

    Without ``min_probability``: ``|mean - target| <= window``; with it, the window's
    probability (`window_probability`) is at least that. With ``max_sigma``, also
    ``std <= max_sigma``.
    """
    if min_probability is None:
        ok = np.abs(mean - target) <= window + 1e-12
    else:
        ok = window_probability(mean, std, target, window) >= min_probability - 1e-12
    if max_sigma is not None:
        ok &= std <= max_sigma
    return np.asarray(ok, dtype=bool)


def with_measurements(
    designs: np.ndarray,
    measured_X: np.ndarray,
    measured_y: np.ndarray,
    space: DesignSpace,
    *,
    target: float,
    window: float,
    tolerance: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates with the campaign's measurements as evidence: ``(X (m, d), value (m,))``.

    ``designs (n, d)`` and ``measured_X (k, d)`` are physical; ``value`` is NaN for a
    design never measured. A candidate within ``tolerance`` (unit box) of a measured
    design takes its value (the mean of repeats); candidates measured outside
    ``target ± window`` are dropped (a measurement beats any prediction); measured designs
    inside it that are no candidate are appended after the candidates, in ledger order.
    Failed measurements (non-finite values) are no evidence.
    """
    X = design_matrix(designs, space)
    mX = design_matrix(measured_X, space)
    my = np.asarray(measured_y, dtype=np.float64).reshape(-1)
    ok = np.isfinite(my)
    mX, my = mX[ok], my[ok]
    values = np.full(len(X), np.nan)
    if not len(mX):
        return X, values
    mU = space.to_unit(mX)
    keys = np.round(mU / max(tolerance, 1e-12)).astype(np.int64)
    _, first, group = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    group = group.reshape(-1)
    mean_y = np.bincount(group, weights=my) / np.bincount(group)
    order = np.argsort(first, kind="stable")  # unique designs in ledger order
    uX, uy = mX[first[order]], mean_y[order]
    seen = np.zeros(len(uX), dtype=bool)
    if len(X):
        dist, idx = cKDTree(space.to_unit(uX)).query(space.to_unit(X))
        near = dist <= tolerance
        values[near] = uy[idx[near]]
        seen[idx[near]] = True
    inside = np.abs(uy - target) <= window + 1e-12
    keep = ~(np.isfinite(values) & (np.abs(values - target) > window + 1e-12))
    extra = ~seen & inside
    return np.vstack([X[keep], uX[extra]]), np.concatenate([values[keep], uy[extra]])


def verify_pairs(
    table: pd.DataFrame,
    model: Predictor,
    space: DesignSpace,
    *,
    targets: tuple[float, float],
    windows: float | tuple[float, float] = 0.1,
    max_sigma: float | None = None,
    min_probability: float | None = None,
) -> pd.DataFrame:
    """``table`` plus ``pred_0, pred_std_0, prob_0, pred_1, pred_std_1, prob_1`` and ``verified``.

    ``prob_*`` is the window's probability under the model (`window_probability`).
    ``verified``: each end is in its window by `window_mask` (the mean, or with
    ``min_probability`` the probability, and with ``max_sigma`` its σ), or, where the
    table has ``evidence_<end>`` = ``"measured"``, by the value in ``measured_<end>``.
    """
    out = table.copy()
    w = target_windows(windows)
    ok = np.ones(len(out), dtype=bool)
    for end in (0, 1):
        X = end_designs(out, space, end)
        mean, std = model.predict(space.to_unit(X)) if len(X) else (np.zeros(0), np.zeros(0))
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        out[f"pred_{end}"] = mean
        out[f"pred_std_{end}"] = std
        out[f"prob_{end}"] = window_probability(mean, std, targets[end], w[end])
        good = window_mask(mean, std, targets[end], w[end], max_sigma, min_probability)
        if f"evidence_{end}" in out.columns and f"measured_{end}" in out.columns:
            known = (out[f"evidence_{end}"] == "measured").to_numpy(bool)
            value = out[f"measured_{end}"].to_numpy(np.float64)
            good = np.where(known, np.abs(value - targets[end]) <= w[end] + 1e-12, good)
        ok &= good
    out["verified"] = ok
    return out


def in_window_candidates(
    designs: pd.DataFrame | np.ndarray,
    model: Predictor,
    space: DesignSpace,
    *,
    target: float,
    window: float,
    max_sigma: float | None = None,
) -> pd.DataFrame:
    """The designs the surrogate puts within ``window`` of ``target``, with ``pred`` and ``pred_std``.

    Use it to draw switching candidates from a pool. With a table oracle (which refuses
    designs that are not its own rows) candidates must come from the table itself, e.g.
    ``in_window_candidates(TableOracle().pool(), ...)``; a frame keeps its index.
    """
    X = design_matrix(designs, space)
    index = designs.index if isinstance(designs, pd.DataFrame) else pd.RangeIndex(len(X))
    frame = pd.DataFrame(X, columns=space.names, index=index)
    if not len(X):
        return frame.assign(pred=np.zeros(0), pred_std=np.zeros(0))
    mean, std = model.predict(space.to_unit(X))
    frame["pred"], frame["pred_std"] = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    return frame[window_mask(frame["pred"].to_numpy(), frame["pred_std"].to_numpy(), target, window, max_sigma)]
