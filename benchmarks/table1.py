"""Table 1 of MatDesINNe on the bundled MoS2 data: six methods x three targets.

Run ``python -m benchmarks.table1`` (``--json PATH`` also
writes the figures, ``--quick`` shrinks everything for a smoke run).

Protocol (chosen so that no figure grades a model against itself):
- ``S80``: the production surrogate trained on a group-aware 80 % split; its test MAE
  (overall and within ±0.1 eV of each target) and ±1σ/±2σ coverage are reported on the
  held-out 20 %.
- The rows of the data are split by group into two disjoint halves A and B. Every
  generator and the *localizing* ensemble ``S_A`` are trained on A only; the
  *independent validator* ``V_B`` is an ensemble trained on B with other seeds. A
  candidate's error is reported against both: ``mae_loc`` (comparable to the paper,
  which graded samples with the surrogate they were optimised on) and ``mae_val``.
- Raw generator rows (MDN, cVAE, INN, cINN) grade every sample, projected onto the
  box so that the surrogates are not asked about cells outside their data; the
  ``in_box`` column is measured before that projection. MatDesINNe rows grade the
  candidates that survive down-selection and localization (``kept`` of ``n``).
- ``diversity``: mean nearest-neighbour distance of candidates over that of training
  rows with a gap within ±0.1 eV of the target, at equal counts (see
  `agent.design.metrics.diversity_ratio`). ``seconds``: sampling + down-selection +
  localization for ``n`` samples, models already trained.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.core.materials import get_material
from agent.core.paths import default_state_dir
from agent.design.funnel import DESIGN, design
from agent.design.metrics import diversity_ratio, mae_against
from agent.design.trained import ModelCache, training_data
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble, calibration_report

PAPER: dict[str, tuple[float, float, float, str]] = {
    "MDN": (0.184, 0.421, 0.840, "~5 s"),
    "cVAE": (0.064, 0.461, 0.973, "~5.5 s"),
    "INN": (0.038, 0.527, 0.835, "~5.8 s"),
    "cINN": (0.063, 0.219, 0.193, "~5.8 s"),
    "MatDesINNe-INN": (0.038, 0.512, 0.321, "~31 s"),
    "MatDesINNe-cINN": (0.020, 0.013, 0.015, "~30 s"),
}
METHODS: dict[str, tuple[str, bool]] = {
    "MDN": ("mdn", False),
    "cVAE": ("cvae", False),
    "INN": ("inn", False),
    "cINN": ("cinn", False),
    "MatDesINNe-INN": ("inn", True),
    "MatDesINNe-cINN": ("cinn", True),
}
TARGETS = (0.0, 0.5, 1.0)


def _surrogate_figures(model: SurrogateEnsemble, U: np.ndarray, y: np.ndarray) -> dict[str, float]:
    out = calibration_report(model, U, y)
    mean, _ = model.predict(U)
    for t in TARGETS:
        near = np.abs(y - t) <= 0.1
        out[f"mae_near_{t:g}"] = float(np.abs(mean[near] - y[near]).mean()) if near.any() else float("nan")
        out[f"n_near_{t:g}"] = float(near.sum())
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    material = get_material("mos2")
    space = material.space
    obs = training_data(material)
    store = ModelCache(Path(args.state) if args.state else default_state_dir(), retrain=args.retrain)
    scfg = dict(progress=args.progress) | ({"epochs": 20, "warm_epochs": 5} if args.quick else {})
    gtrain = {"epochs": 3} if args.quick else {}
    timings: dict[str, float] = {}

    def timed_surrogate(tag: str, data: Any, seed: int) -> SurrogateEnsemble:
        t0 = time.perf_counter()
        model, _, trained = store.surrogate("mos2", data.U, data.y, data.groups(), EnsembleConfig(seed=seed, **scfg))
        timings[f"train {tag}" + ("" if trained else " (cached)")] = time.perf_counter() - t0
        return model

    train80, test20 = obs.split(test_fraction=0.2, seed=args.seed)
    s80 = timed_surrogate("S80", train80, args.seed)
    half_a, half_b = obs.split_groups(2, seed=args.seed + 1)
    s_a = timed_surrogate("S_A", half_a, args.seed)
    v_b = timed_surrogate("V_B", half_b, args.seed + 1000)
    surrogates = {
        "S80 on test 20%": _surrogate_figures(s80, test20.U, test20.y),
        "S_A on half B": _surrogate_figures(s_a, half_b.U, half_b.y),
        "V_B on half A": _surrogate_figures(v_b, half_a.U, half_a.y),
    }
    generators = {}
    for gname in sorted({g for g, _ in METHODS.values()} & set(args.generators)):
        t0 = time.perf_counter()
        gen, _, trained = store.generator(
            "mos2", gname, half_a.U, half_a.y, {"seed": args.seed, "progress": args.progress, **gtrain}
        )
        timings[f"train {gname}" + ("" if trained else " (cached)")] = time.perf_counter() - t0
        generators[gname] = gen

    rows: list[dict[str, Any]] = []
    for method, (gname, refine) in METHODS.items():
        if gname not in generators:
            continue
        for t in TARGETS:
            cfg = replace(DESIGN, n_samples=args.n, raw=not refine)
            t0 = time.perf_counter()
            res = design(space, generators[gname], s_a, t, cfg, seed=args.seed)
            seconds = time.perf_counter() - t0
            U = res.U
            in_box = float(space.valid_mask(space.from_unit(U)).mean()) if len(U) else float("nan")
            Ue = np.clip(U, 0.0, 1.0)
            ref = half_a.U[np.abs(half_a.y - t) <= 0.1]
            rows.append(
                {
                    "method": method,
                    "target": t,
                    "n": args.n,
                    "kept": len(U),
                    "mae_loc": mae_against(s_a.predict(Ue)[0], t) if len(U) else float("nan"),
                    "mae_val": mae_against(v_b.predict(Ue)[0], t) if len(U) else float("nan"),
                    "in_box": in_box,
                    "diversity": diversity_ratio(Ue, ref, seed=args.seed),
                    "seconds": seconds,
                    "paper_mae": PAPER[method][TARGETS.index(t)],
                }
            )
            if args.progress:
                print(f"  {method} @ {t:g} eV: {rows[-1]['mae_val']:.4f} eV, {seconds:.2f} s", file=sys.stderr)
    return {
        "rows": rows,
        "surrogates": surrogates,
        "train_seconds": timings,
        "settings": {"n": args.n, "seed": args.seed, "quick": args.quick, "threads": args.threads},
    }


def _table(columns: list[tuple[str, str]], rows: list[list[Any]]) -> list[str]:
    """Right-aligned text table; ``columns`` are ``(header, format spec)``."""
    cells = [[format(v, spec) for v, (_, spec) in zip(row, columns)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, (h, _) in enumerate(columns)]
    head = "  ".join(h.rjust(w) for (h, _), w in zip(columns, widths))
    return [head, "-" * len(head)] + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]


def render(result: dict[str, Any]) -> str:
    lines = ["Table 1 — MAE in eV (loc: localizing surrogate S_A; val: independent validator V_B)", ""]
    cols = [
        ("method", ""),
        ("target", ".2f"),
        ("kept", "d"),
        ("mae_loc", ".4f"),
        ("mae_val", ".4f"),
        ("paper", ".3f"),
        ("in_box", ".1%"),
        ("divers.", ".2f"),
        ("seconds", ".2f"),
        ("paper s", ""),
    ]
    lines += _table(
        cols,
        [
            [
                r["method"],
                r["target"],
                r["kept"],
                r["mae_loc"],
                r["mae_val"],
                r["paper_mae"],
                r["in_box"],
                r["diversity"],
                r["seconds"],
                PAPER[r["method"]][3],
            ]
            for r in result["rows"]
        ],
    )
    lines += ["", "Surrogate ensembles (held-out rows; MAE near t: rows with |gap - t| <= 0.1 eV)", ""]
    cols = [
        ("model", ""),
        ("n", ".0f"),
        ("MAE", ".4f"),
        ("MAE gap>0", ".4f"),
        ("near 0", ".4f"),
        ("near 0.5", ".4f"),
        ("near 1", ".4f"),
        ("cov 1σ", ".1%"),
        ("cov 2σ", ".1%"),
    ]
    lines += _table(
        cols,
        [
            [
                name,
                s["n"],
                s["mae"],
                s["mae_nonzero"],
                s["mae_near_0"],
                s["mae_near_0.5"],
                s["mae_near_1"],
                s["coverage_1sigma"],
                s["coverage_2sigma"],
            ]
            for name, s in result["surrogates"].items()
        ],
    )
    lines += ["", "Training wall seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["train_seconds"].items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.table1", description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=10_000, help="samples per method and target")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures as JSON to this path")
    p.add_argument("--state", help="model cache folder (default $INNLOOP_STATE_DIR or ./state)")
    p.add_argument("--retrain", action="store_true", help="ignore cached models")
    p.add_argument("--quick", action="store_true", help="tiny training budgets: a smoke run, not figures")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--generators", nargs="+", default=["mdn", "cvae", "inn", "cinn"])
    p.add_argument("--progress", action="store_true", help="progress bars and per-row log lines")
    args = p.parse_args(argv)
    result = run(args)
    print(render(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
