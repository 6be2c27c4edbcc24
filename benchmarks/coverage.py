"""Family coverage: how many distinct families of the solution set a method's hits reach.

Protocol (every method, same seeds, side by side in one run; `benchmarks.campaign` for
the oracles, seed designs, batches and methods):

- the oracle's true solution set per target: the ``table`` oracle's rows in the window
  (the bundled MoS2 data), or for the ``mock`` 200,000 uniform valid designs (seed 2024)
  put through its emulator, those in the window;
- the set split into ``k`` families by k-means in the unit box (`agent.design.coverage`:
  10 restarts, seed 0), for each ``k`` of ``--families`` (default 5, 10 and 20);
- methods: ``random`` screening, the ``gp`` baseline, ``innloop-basin`` (the campaign with
  ``families = 1``: the likeliest hits wherever they are, as before hits were spread) and
  ``innloop`` (its defaults: hits spread over the families its models believe in);
- each method runs to a fixed budget of ``--calls`` oracle calls (default 150, the 50
  seed designs included); its diverse hits (`agent.campaign.state.diverse_hits`) are
  counted, and the families holding at least one of them.

Prints one markdown table (median and per-seed hits and families covered per ``k``) and
writes every run with ``--json``. Run ``python -m benchmarks.coverage --help``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agent.design.coverage import Families, find_families
from benchmarks.campaign import Problem, run_baseline, run_innloop, target_range

__all__ = ["main", "solution_set"]

METHODS = ("random", "gp", "innloop-basin", "innloop")
MOCK_SAMPLES, MOCK_SEED = 200_000, 2024


def solution_set(problem: Problem, target: float) -> np.ndarray:
    """Unit-box designs ``(n, d)`` of the oracle's true solution set for ``target`` (± 0.1 eV)."""
    r = target_range(target)
    if problem.pool is not None:
        U = problem.pool
        y = problem.measure(U)
    else:
        U = problem.space.sample_unit(np.random.default_rng(MOCK_SEED), MOCK_SAMPLES)
        y = problem.oracle.gap(problem.space.from_unit(U))  # type: ignore[attr-defined]
    return np.asarray(U[r.contains(y)])


def _row(oracle: str, target: float, method: str, runs: list[dict[str, Any]], ks: list[int]) -> str:
    hits = [len(r["curve"]) for r in runs]
    cells = [f"{np.median(hits):.0f} ({' '.join(map(str, hits))})"]
    for k in ks:
        covered = [r["families"][str(k)] for r in runs]
        cells.append(f"{np.median(covered):.0f} ({' '.join(map(str, covered))})")
    return f"| {oracle} | {target:g} | {method} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.coverage", description=__doc__.split("\n")[0])
    p.add_argument("--oracle", nargs="+", default=["mock", "table"], choices=["table", "mock"])
    p.add_argument("--targets", nargs="+", type=float, default=[1.0, 1.5])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--calls", type=int, default=150, help="oracle calls per run, seed designs included")
    p.add_argument("--families", nargs="+", type=int, default=[5, 10, 20])
    p.add_argument("--json", type=Path, help="write every run here")
    args = p.parse_args(argv)

    runs: list[dict[str, Any]] = []
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="innloop-coverage-") as tmp:
        for oracle in args.oracle:
            problem = Problem(oracle, None, Path(tmp) / oracle)
            for target in args.targets:
                solutions = solution_set(problem, target)
                families: dict[int, Families] = {k: find_families(solutions, k, seed=0) for k in args.families}
                print(f"{oracle} {target:g} eV: {len(solutions)} designs in the solution set", file=sys.stderr)
                for method in args.methods:
                    mine = []
                    for seed in range(args.seeds):
                        if method.startswith("innloop"):
                            work = Path(tmp) / f"{oracle}-{target:g}-{seed}-{method}"
                            one = 1 if method == "innloop-basin" else None  # one family: no spreading
                            out = run_innloop(problem, target, seed, args.calls, work, wanted=10**6, families=one)
                        else:
                            out = run_baseline(method, problem, target, seed, args.calls, wanted=10**6)
                        hits_u = np.asarray(out["hits_u"]).reshape(-1, solutions.shape[1])
                        out |= {"oracle": oracle, "target": target, "method": method, "seed": seed}
                        out["families"] = {str(k): len(f.covered(hits_u)) for k, f in families.items()}
                        print(
                            f"{oracle} {target:g} seed {seed} {method}: {len(out['curve'])} hits, "
                            f"families {out['families']}",
                            file=sys.stderr,
                        )
                        mine.append(out)
                    rows.append(_row(oracle, target, method, mine, args.families))
                    runs += mine
    ks = " | ".join(f"families of {k}" for k in args.families)
    print(f"| oracle | target (eV) | method | diverse hits in {args.calls} calls | {ks} |")
    print("|---|---|---|---|" + "---|" * len(args.families))
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "runs": runs}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
