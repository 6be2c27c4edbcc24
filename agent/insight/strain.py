"""Strain features of designs: how far each cell is from the unstrained one, in physical terms.

Designs are cells ``(a, b, c, alpha, beta, gamma)`` plus a field; what a reader wants to
see (MatDesINNe Figs. 4 and 5) is strain: normal strain along each lattice vector,
shear as the change of each cell angle, and averages of them. The unstrained cell is
the one the material declares (`Material.reference_cell`), looked up by name through the
registry, so a new material brings its own reference cell with it.

Definitions (every strain in %, every angle in degrees):

- normal strain ``strain_x = (x / x0 - 1) * 100`` for ``x`` in ``a, b, c``;
- angle deviation ``angle_t = t - t0`` for ``t`` in ``alpha, beta, gamma``;
- shear strain ``shear_t = tan(t - t0) * 100``: the engineering shear of a cell whose
  angle opened by ``t - t0`` (exact for simple shear, ≈ the deviation in radians for
  small angles); positive when the angle opens;
- ``in_plane`` / ``out_of_plane``: the mean *relative* deviation, in %, of the in-plane
  parameters ``(a, b, gamma)`` and of the out-of-plane ones ``(c, alpha, beta)``, an
  angle counting as ``(t / t0 - 1) * 100``. This is how the MatDesINNe data were
  sampled (each of the six parameters perturbed by up to ±20 % of its unstrained
  value), so every parameter spans the same ±20 % and weighs the same in the average;
- ``normal_mean`` and ``shear_mean``: the mean of the three normal strains (net
  tension > 0, compression < 0) and of the three shear strains;
- ``normal_abs_mean`` and ``shear_abs_mean``: the mean of their absolute values, i.e.
  how strained the cell is whatever the sign (the absolute value of the mean would
  let tension along one axis hide compression along another).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from agent.core.errors import DataError, UnknownNameError
from agent.core.materials import Material, ReferenceCell, get_material

__all__ = [
    "FEATURES",
    "QUANTILES",
    "cell_reference",
    "features_by_group",
    "quantile_table",
    "strain_features",
]

LENGTHS = ("a", "b", "c")
ANGLES = ("alpha", "beta", "gamma")

FEATURES: tuple[str, ...] = (
    "strain_a",
    "strain_b",
    "strain_c",
    "angle_alpha",
    "angle_beta",
    "angle_gamma",
    "shear_alpha",
    "shear_beta",
    "shear_gamma",
    "in_plane",
    "out_of_plane",
    "normal_mean",
    "normal_abs_mean",
    "shear_mean",
    "shear_abs_mean",
)
"""Columns of `strain_features`, in order (units in the module docstring)."""

QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


def cell_reference(material: str | Material) -> ReferenceCell:
    """The unstrained cell ``material`` (a registered name or a `Material`) declares.

    `UnknownNameError` for a name nobody registered or a material without one.
    """
    found = get_material(material) if isinstance(material, str) else material
    if found.reference_cell is None:
        raise UnknownNameError(f"material {found.name!r} declares no reference (unstrained) cell")
    return found.reference_cell


def _cell_columns(designs: pd.DataFrame | np.ndarray) -> np.ndarray:
    """``(n, 6)`` float64 array of ``a, b, c, alpha, beta, gamma`` from a frame or array.

    An array must have the cell in its first six columns (the design-space order).
    """
    if isinstance(designs, pd.DataFrame):
        missing = [c for c in LENGTHS + ANGLES if c not in designs.columns]
        if missing:
            raise DataError(f"designs lack cell columns {missing} (found {list(designs.columns)})")
        arr = designs[list(LENGTHS + ANGLES)].to_numpy(dtype=np.float64)
    else:
        arr = np.asarray(designs, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] < 6:
            raise DataError(f"designs must be (n, >=6) with the cell first; got shape {arr.shape}")
        arr = arr[:, :6]
    return arr


def strain_features(designs: pd.DataFrame | np.ndarray, material: str | Material = "mos2") -> pd.DataFrame:
    """Per design, the strain features `FEATURES` relative to ``material``'s unstrained cell.

    ``designs``: a frame with columns ``a, b, c, alpha, beta, gamma`` (others ignored) or
    an ``(n, >=6)`` array in that order, physical units. Returns ``(n, len(FEATURES))``
    with the input's index when it is a frame.
    """
    ref = cell_reference(material)
    X = _cell_columns(designs)
    x0 = np.array(ref.lengths + ref.angles)
    rel = (X / x0 - 1.0) * 100.0  # (n, 6) relative deviation of all six, %
    dev = X[:, 3:] - x0[3:]  # (n, 3) angle deviations, degrees
    normal = rel[:, :3]
    shear = np.tan(np.radians(dev)) * 100.0
    cols = {
        **{f"strain_{n}": normal[:, i] for i, n in enumerate(LENGTHS)},
        **{f"angle_{n}": dev[:, i] for i, n in enumerate(ANGLES)},
        **{f"shear_{n}": shear[:, i] for i, n in enumerate(ANGLES)},
        "in_plane": rel[:, [0, 1, 5]].mean(axis=1),
        "out_of_plane": rel[:, [2, 3, 4]].mean(axis=1),
        "normal_mean": normal.mean(axis=1),
        "normal_abs_mean": np.abs(normal).mean(axis=1),
        "shear_mean": shear.mean(axis=1),
        "shear_abs_mean": np.abs(shear).mean(axis=1),
    }
    index = designs.index if isinstance(designs, pd.DataFrame) else None
    return pd.DataFrame(cols, index=index)[list(FEATURES)]


def features_by_group(
    sets: Mapping[str, pd.DataFrame | np.ndarray], material: str | Material = "mos2", *, group: str = "group"
) -> pd.DataFrame:
    """`strain_features` of several design sets stacked, with a ``group`` column naming the set.

    E.g. ``{"data 1.0 eV": rows, "generated 1.0 eV": cands}``; rows keep set order.
    """
    parts = []
    for label, designs in sets.items():
        f = strain_features(designs, material).reset_index(drop=True)
        f.insert(0, group, label)
        parts.append(f)
    if not parts:
        return pd.DataFrame(columns=[group, *FEATURES])
    return pd.concat(parts, ignore_index=True)


def quantile_table(
    features: pd.DataFrame,
    groups: Sequence[Any] | pd.Series | np.ndarray | str,
    *,
    columns: Sequence[str] | None = None,
    quantiles: Sequence[float] = QUANTILES,
) -> pd.DataFrame:
    """Per group and feature, the row count and the ``quantiles`` of the feature.

    ``groups``: one label per row of ``features`` (e.g. the target each design was made
    for), or the name of a column of ``features`` holding them. ``columns``: which
    features (default: every numeric column but the group column). Returns a long
    table with columns ``group, feature, n, q05, q25, q50, q75, q95`` (one ``qNN`` per
    quantile, NN in percent), groups in order of first appearance: the table a figure of
    distributions is drawn from, and small enough to print beside it.
    """
    if isinstance(groups, str):
        if groups not in features.columns:
            raise DataError(f"no group column {groups!r} in features (found {list(features.columns)})")
        labels = features[groups].to_numpy()
        features = features.drop(columns=[groups])
    else:
        labels = np.asarray(groups)
        if len(labels) != len(features):
            raise DataError(f"{len(labels)} group labels for {len(features)} feature rows")
    if any(not 0.0 <= q <= 1.0 for q in quantiles):
        raise DataError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    cols = list(columns) if columns is not None else list(features.select_dtypes("number").columns)
    missing = [c for c in cols if c not in features.columns]
    if missing:
        raise DataError(f"features lack columns {missing}")
    qnames = [f"q{round(q * 100):02d}" for q in quantiles]
    rows: list[dict[str, Any]] = []
    for label in pd.unique(labels):
        part = features.loc[labels == label, cols].to_numpy(dtype=np.float64)
        for j, col in enumerate(cols):
            values = part[:, j][np.isfinite(part[:, j])]
            qs = np.quantile(values, quantiles) if len(values) else np.full(len(quantiles), np.nan)
            rows.append({"group": label, "feature": col, "n": len(values), **dict(zip(qnames, map(float, qs)))})
    return pd.DataFrame(rows, columns=["group", "feature", "n", *qnames])
