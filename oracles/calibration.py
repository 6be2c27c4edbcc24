"""Put one DFT code's band gaps on another code's scale.

Why: a campaign mixes observations from different sources (the bundled VASP rows, a
local GPAW run, a cluster). Gaps from two PBE set-ups of the same cells can differ by a
near-constant amount (GPAW vs the bundled VASP data: +0.46 eV on every gapped row, and
the VASP "metals" are the cells whose GPAW gap is below that shift). Mixing them raw
would teach the surrogate a step that is not physics.

The map is ``target = max(0, slope * gap + shift)``: an affine map of the gap with the
clip at zero that turns small source gaps into target-scale metals. It is fitted on rows
measured by both codes with a censored least-squares loss (squared error on rows the
target calls gapped, a squared hinge on rows it calls metallic) and carries its own
provenance: the settings it was fitted under, the rows, and the figures on held-out rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from agent.core.atomic import write_json
from oracles.base import OracleError

__all__ = ["BUNDLED", "METAL_TOL", "GapCalibration", "agreement", "gap_from_smeared_dos", "load_calibration"]

# name -> file under oracles/data; reproduced by benchmarks/gpaw_calibration.py --write
BUNDLED = {"mos2-gpaw-to-vasp": "gpaw_mos2_calibration.json"}
METAL_TOL = 0.05  # eV: a computed gap below this counts as metallic (k-mesh and smearing noise)


@dataclass(frozen=True)
class GapCalibration:
    """``target = max(0, slope * source + shift)``, with where it came from."""

    slope: float = 1.0
    shift: float = 0.0
    source: str = ""
    target: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slope) and math.isfinite(self.shift)) or self.slope <= 0:
            raise OracleError(f"calibration needs a finite positive slope and a finite shift, got {self}")

    def apply(self, gap: Any) -> np.ndarray:
        """Source-scale gaps ``(n,)`` -> target-scale gaps ``(n,)``; NaN stays NaN."""
        g = np.asarray(gap, dtype=np.float64)
        return np.maximum(self.slope * g + self.shift, 0.0)

    @classmethod
    def fit(cls, gaps: Any, reference: Any, *, fit_slope: bool = True, **meta: Any) -> GapCalibration:
        """Fit on paired gaps ``(n,)`` (this code, the reference code); rows with a NaN on either side are left out.

        ``fit_slope=False`` fits the shift alone (one parameter: safer on few rows).
        """
        g = np.asarray(gaps, dtype=np.float64)
        v = np.asarray(reference, dtype=np.float64)
        if g.shape != v.shape or g.ndim != 1:
            raise OracleError(f"calibration needs two equal 1-d arrays, got {g.shape} and {v.shape}")
        ok = np.isfinite(g) & np.isfinite(v)
        g, v = g[ok], v[ok]
        gapped = v > 0.0
        if gapped.sum() < 2:
            raise OracleError(f"calibration needs at least 2 rows with a target gap, got {int(gapped.sum())}")

        def loss(p: np.ndarray) -> float:
            slope, shift = (p[0], p[1]) if fit_slope else (1.0, p[0])
            f = slope * g + shift
            return float(np.sum((f[gapped] - v[gapped]) ** 2) + np.sum(np.maximum(f[~gapped], 0.0) ** 2))

        start_shift = float(np.mean(v[gapped] - g[gapped]))
        x0 = np.array([1.0, start_shift] if fit_slope else [start_shift])
        res = minimize(loss, x0, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 4000})
        slope, shift = (float(res.x[0]), float(res.x[1])) if fit_slope else (1.0, float(res.x[0]))
        notes = {"n_rows": int(ok.sum()), "n_gapped": int(gapped.sum()), "fit_slope": fit_slope} | meta.pop("notes", {})
        return cls(slope=slope, shift=shift, notes=notes, **meta)

    # -- persistence -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, *, where: str = "calibration") -> GapCalibration:
        if not isinstance(data, dict):
            raise OracleError(f"{where}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"slope", "shift", "source", "target", "notes"})
        if unknown:
            raise OracleError(f"{where}: unknown fields {unknown}")
        try:
            return cls(
                slope=float(data.get("slope", 1.0)),
                shift=float(data.get("shift", 0.0)),
                source=str(data.get("source", "")),
                target=str(data.get("target", "")),
                notes=dict(data.get("notes") or {}),
            )
        except (TypeError, ValueError) as exc:
            raise OracleError(f"{where}: {exc}") from None

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json(), indent=1)


def load_calibration(spec: str | Path | GapCalibration | dict[str, Any] | None) -> GapCalibration | None:
    """A calibration from a bundled name, a JSON file, a mapping, or None for none."""
    if spec is None or isinstance(spec, GapCalibration):
        return spec
    if isinstance(spec, dict):
        return GapCalibration.from_json(spec)
    name = str(spec)
    if name in BUNDLED:
        text = (resources.files("oracles") / "data" / BUNDLED[name]).read_text()
        return GapCalibration.from_json(json.loads(text), where=f"bundled calibration {name!r}")
    path = Path(name)
    if not path.is_file():
        raise OracleError(f"calibration {name!r} is neither a bundled one {sorted(BUNDLED)} nor a file")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise OracleError(f"calibration file {path} is unreadable: {exc}") from None
    return GapCalibration.from_json(data, where=f"calibration file {path}")


def agreement(pred: Any, ref: Any, *, metal_tol: float = METAL_TOL) -> dict[str, float]:
    """How well ``pred`` gaps ``(n,)`` match ``ref`` gaps ``(n,)``: MAE, r, metals right."""
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    metal = r == 0.0
    gapped = ~metal
    return {
        "n": int(ok.sum()),
        "mae_eV": float(np.mean(np.abs(p - r))) if len(p) else math.nan,
        "mae_gapped_eV": float(np.mean(np.abs(p[gapped] - r[gapped]))) if gapped.any() else math.nan,
        "max_abs_eV": float(np.max(np.abs(p - r))) if len(p) else math.nan,
        "pearson_r": float(np.corrcoef(p, r)[0, 1]) if len(p) > 2 and np.std(p) > 0 else math.nan,
        "metals_right": int((p[metal] < metal_tol).sum()),
        "metals": int(metal.sum()),
        "gapped_called_metal": int((p[gapped] < metal_tol).sum()),
    }


def gap_from_smeared_dos(
    eigenvalues: Any, k_weights: Any, fermi: float, *, sigma: float = 0.1, threshold: float = 0.01, step: float = 0.002
) -> float:
    """The gap as read off a Gaussian-smeared density of states, not off the eigenvalues.

    ``eigenvalues`` ``(spins, k, bands)`` or ``(k, bands)`` in eV, ``k_weights`` ``(k,)``
    summing to 1. The DOS (states/eV per spin, width ``sigma``) is scanned outwards from
    the Fermi level; the gap is the width of the window where it stays below
    ``threshold``, 0 if the Fermi level itself is above it. Each band edge's tail eats a
    fixed energy, so this reading sits a near-constant amount below the eigenvalue gap
    and reads small gaps as metals -- the signature of the GPAW-vs-bundled-VASP offset.
    """
    eps = np.asarray(eigenvalues, dtype=np.float64)
    eps = eps.reshape((-1, *eps.shape[-2:]))
    w = np.asarray(k_weights, dtype=np.float64)
    if eps.shape[1] != len(w):
        raise ValueError(f"{eps.shape[1]} k-points of eigenvalues but {len(w)} weights")
    grid = np.arange(fermi - 4.0, fermi + 4.0 + step / 2, step)
    levels = eps.transpose(1, 0, 2).reshape(len(w), -1)  # (k, spins * bands)
    weights = np.repeat(w, levels.shape[1]) / eps.shape[0]
    centres = levels.ravel()
    dos = np.zeros_like(grid)
    for chunk in range(0, len(centres), 256):
        c, cw = centres[chunk : chunk + 256], weights[chunk : chunk + 256]
        dos += (cw[None, :] * np.exp(-0.5 * ((grid[:, None] - c[None, :]) / sigma) ** 2)).sum(axis=1)
    dos /= sigma * np.sqrt(2.0 * np.pi)
    i = int(np.argmin(np.abs(grid - fermi)))
    if dos[i] > threshold:
        return 0.0
    above = np.nonzero(dos > threshold)[0]
    lo, hi = above[above < i], above[above > i]
    if not len(lo) or not len(hi):
        raise ValueError("the smeared DOS never rises above the threshold on one side of the Fermi level")
    return float(grid[hi[0]] - grid[lo[-1]] - step)
