"""Which atomic-position convention reproduces the bundled VASP gaps? Ask GPAW.

A design point fixes only the cell; where the S atoms sit is a convention
(`agent.core.materials.mos2.build_structure`). The statistical argument for "fractional" is
indirect (the gap depends on ``c``); this benchmark checks it directly: it recomputes a
seeded mix of bundled rows with GPAW under both conventions and compares with the VASP
gaps -- correlation, MAE, mean signed offset on gapped rows, metals right/wrong, and
seconds per design -- plus the unstrained cell under each convention.

Each DFT run is a separate ``python -m oracles.gpaw_job`` process with a timeout, one at
a time (the machine is shared; one core per job).

    python -m benchmarks.gpaw_convention --ecut 300 --kpts 3 3 1 --rows 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agent.core.materials import get_material, load_dataset
from oracles.calibration import METAL_TOL, agreement

__all__ = ["UNSTRAINED", "main", "pick_rows", "run_one", "summarise"]

UNSTRAINED = {"a": 3.16, "b": 3.16, "c": 12.30, "alpha": 90.0, "beta": 90.0, "gamma": 120.0, "efield": 0.0}
CONVENTIONS = tuple(get_material("mos2").conventions)  # fractional, cartesian
DESIGN_KEYS = tuple(get_material("mos2").space.names)


def pick_rows(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A seeded mix of rows: sheared, near-unstrained, strong field, metals, mid gaps.

    Why a mix and not a plain random draw: 64 % of the rows are metals, so a random 20
    would say little about gapped rows or about the shear/field directions where the two
    conventions differ most. Each category gets about n/5 rows (without repeats); the
    rest is random. The ``category`` column records why a row was picked.
    """
    rng = np.random.default_rng(seed)
    f = frame.drop_duplicates(subset=list(DESIGN_KEYS)).copy()
    shear = np.maximum.reduce([(f.alpha - 90).abs(), (f.beta - 90).abs(), (f.gamma - 120).abs()])
    near = (
        ((f.a / 3.16 - 1).abs() < 0.03)
        & ((f.b / 3.16 - 1).abs() < 0.03)
        & ((f.c / 12.30 - 1).abs() < 0.05)
        & (shear < 3.0)
    )
    categories = {
        "sheared": shear > 10.0,
        "near-unstrained": near,
        "strong-field": f.efield.abs() > 0.3,
        "metal": f.gap == 0.0,
        "gap 0.3-1.8": (f.gap >= 0.3) & (f.gap <= 1.8),
    }
    per = max(1, n // len(categories))
    chosen: dict[int, str] = {}
    for name, mask in categories.items():
        pool = [i for i in f.index[np.asarray(mask, dtype=bool)] if i not in chosen]
        for i in rng.permutation(pool)[:per]:
            chosen[int(i)] = name
    rest = [i for i in f.index if i not in chosen]
    for i in rng.permutation(rest)[: max(0, n - len(chosen))]:
        chosen[int(i)] = "random"
    out = f.loc[list(chosen)].copy()
    out["category"] = [chosen[i] for i in out.index]
    return out


def run_one(
    design: dict[str, float], convention: str, settings: dict[str, Any], folder: Path, timeout_s: float
) -> dict[str, Any]:
    """One job in its own process; a timeout or crash becomes an error record, not an exception."""
    folder.mkdir(parents=True, exist_ok=True)
    inp, out = folder / "input.json", folder / "output.json"
    inp.write_text(json.dumps({"material": "mos2", "design": design, "convention": convention, "settings": settings}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "oracles.gpaw_job", str(inp), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {
            "gap_eV": None,
            "converged": False,
            "wall_s": time.perf_counter() - start,
            "error": {"class": "infrastructure", "message": f"timeout after {timeout_s:g} s"},
        }
    if not out.is_file():
        return {
            "gap_eV": None,
            "converged": False,
            "wall_s": time.perf_counter() - start,
            "error": {"class": "infrastructure", "message": f"exit {proc.returncode}: {proc.stderr[-500:]}"},
        }
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def summarise(vasp: np.ndarray, gpaw: np.ndarray, wall: np.ndarray) -> dict[str, Any]:
    """Agreement figures for one convention (`oracles.calibration.agreement`); rows whose
    job failed (NaN) are left out."""
    ok = np.isfinite(gpaw)
    a = agreement(gpaw, vasp)
    gapped = ok & (vasp > 0.0)
    return {
        "n_ok": a["n"],
        "n_failed": int((~ok).sum()),
        "pearson_r": a["pearson_r"],
        "mae_eV": a["mae_eV"],
        "mean_offset_gapped_eV": float(np.mean(gpaw[gapped] - vasp[gapped])) if gapped.any() else float("nan"),
        "metals_right": a["metals_right"],
        "metals_wrong": a["metals"] - a["metals_right"],
        "gapped_called_metal": a["gapped_called_metal"],
        "s_per_design": float(np.mean(wall)) if len(wall) else float("nan"),
    }


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return format(x, spec)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison, print the tables, optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ecut", type=float, default=350.0, help="PW cutoff in eV (default 350)")
    p.add_argument("--kpts", type=int, nargs=3, default=[9, 9, 1], help="Γ-centred k-mesh (default 9 9 1)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per job")
    p.add_argument("--conventions", nargs="+", default=list(CONVENTIONS), choices=CONVENTIONS)
    p.add_argument("--workdir", type=Path, default=None, help="job folders (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    settings = {"ecut_eV": args.ecut, "kpts": list(args.kpts)}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpaw_convention_"))
    rows = pick_rows(load_dataset("mos2").frame, args.rows, args.seed)
    print(
        f"GPAW PW {args.ecut:g} eV, k {args.kpts[0]}x{args.kpts[1]}x{args.kpts[2]} (Γ), "
        f"{len(rows)} rows (seed {args.seed}), jobs in {work}",
        flush=True,
    )

    unstrained: dict[str, Any] = {}
    for conv in args.conventions:
        res = run_one(UNSTRAINED, conv, settings, work / f"unstrained_{conv}", args.timeout)
        unstrained[conv] = res
        print(f"unstrained ({conv}): gap {_fmt(res.get('gap_eV'))} eV in {res['wall_s']:.1f} s", flush=True)

    records: list[dict[str, Any]] = []
    print(
        f"\n{'row':>5} {'category':<16} {'a':>6} {'b':>6} {'c':>6} {'al':>6} {'be':>6} {'ga':>6} "
        f"{'E':>6} {'vasp':>6} " + " ".join(f"{c[:4]:>6} {'s':>5}" for c in args.conventions),
        flush=True,
    )
    for pos in range(len(rows)):
        row, idx = rows.iloc[pos], int(rows.index.to_numpy()[pos])
        design = {k: float(row[k]) for k in DESIGN_KEYS}
        rec: dict[str, Any] = {"row": int(idx), "category": row["category"], **design, "vasp_gap": float(row["gap"])}
        for conv in args.conventions:
            res = run_one(design, conv, settings, work / f"row{idx}_{conv}", args.timeout)
            rec[conv] = {"gap_eV": res.get("gap_eV"), "wall_s": res.get("wall_s"), "error": res.get("error")}
        records.append(rec)
        cells = " ".join(f"{_fmt(rec[c]['gap_eV']):>6} {_fmt(rec[c]['wall_s'], '.0f'):>5}" for c in args.conventions)
        print(
            f"{idx:>5} {row['category']:<16} "
            + " ".join(f"{design[k]:6.2f}" for k in DESIGN_KEYS)
            + f" {row['gap']:6.3f} {cells}",
            flush=True,
        )

    vasp = np.array([r["vasp_gap"] for r in records])
    summary: dict[str, Any] = {}
    print(
        f"\n{'convention':<11} {'r':>6} {'MAE':>6} {'offset':>7} {'metal ok':>8} {'metal x':>7} "
        f"{'gap->0':>6} {'failed':>6} {'s/des':>6} {'unstr.':>7}"
    )
    for conv in args.conventions:
        g = np.array([np.nan if r[conv]["gap_eV"] is None else r[conv]["gap_eV"] for r in records], dtype=float)
        wall = np.array([r[conv]["wall_s"] for r in records if r[conv]["wall_s"] is not None], dtype=float)
        s = summarise(vasp, g, wall)
        s["unstrained_gap_eV"] = unstrained[conv].get("gap_eV")
        summary[conv] = s
        print(
            f"{conv:<11} {_fmt(s['pearson_r']):>6} {_fmt(s['mae_eV']):>6} {_fmt(s['mean_offset_gapped_eV']):>7} "
            f"{s['metals_right']:>8} {s['metals_wrong']:>7} {s['gapped_called_metal']:>6} {s['n_failed']:>6} "
            f"{_fmt(s['s_per_design'], '.1f'):>6} {_fmt(s['unstrained_gap_eV']):>7}"
        )
    print(
        f"(offset = mean GPAW - VASP on rows with VASP gap > 0; metal = VASP gap 0, GPAW < {METAL_TOL} eV "
        "counts as right; gap->0 = gapped VASP rows GPAW calls metallic)"
    )

    if args.json is not None:
        payload = {
            "settings": settings,
            "seed": args.seed,
            "metal_tol_eV": METAL_TOL,
            "summary": summary,
            "unstrained": unstrained,
            "rows": records,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
