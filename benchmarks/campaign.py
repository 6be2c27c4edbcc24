"""Campaign benchmark: oracle calls until 50 diverse hits, innloop against four baselines.

Protocol (every method, same seeds, side by side in one run):

- oracle ``table`` (real VASP labels: the bundled MoS2 data or ``--table CSV``; only its
  rows can be measured) or ``mock`` (the continuous emulator);
- 50 random seed designs per seed (random table rows, or uniform valid designs), the same
  for every method, then batches of 10;
- a *hit* is an oracle value within ±0.1 eV of the target; hits count when every two are
  at least 0.1 apart in the unit box (`agent.campaign.state.diverse_hits`, arrival order);
- the score is the number of oracle calls, seeds included, when the 50th diverse hit
  arrives (``>N`` when ``--max-calls N`` ran out first).

Methods: ``random`` screening; ``gp`` (BoTorch SingleTaskGP, Matern-5/2 with one length
scale per parameter, refitted every batch, log probability of the window); ``trees``
(scikit-learn ExtraTrees, 100 trees, spread of the trees as σ, same window probability);
``ensemble`` (innloop's deep ensemble, no generator); ``innloop`` (the campaign itself,
`agent.campaign.runner.run_campaign`, with its default settings except an exploration share of 0,
``--exploration``: the benchmark rewards hits only). The model baselines pick
batches with the same greedy, hit-aware, spacing rules as innloop (`agent.design.acquisition`),
so what differs is the model and, for innloop, the generator and the exploration share.
Candidates of the baselines on the mock are 5,000 fresh uniform valid designs per batch.

``--overhead`` reports one iteration's wall time without the oracle at 200 and 2,000
observations. Run ``python -m benchmarks.campaign --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from agent.campaign.config import config_from_dict
from agent.campaign.runner import run_campaign
from agent.campaign.state import diverse_hits, ledger_arrays, nearest_distance
from agent.core.materials import get_material
from agent.core.targets import TargetRange
from agent.design.acquisition import SelectionConfig, choose_batch, log_window_probability
from agent.models.gp import fit_marginal_likelihood
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from oracles import make_oracle
from oracles.base import MeasuresPool

__all__ = ["Target", "main", "run_baseline", "run_innloop", "target_range"]

METHODS = ("random", "gp", "trees", "ensemble", "innloop")
WINDOW, SPACING, SEEDS_N, BATCH, WANTED = 0.1, 0.1, 50, 10, 50
Target = float | TargetRange  # a band gap (± WINDOW) or any range (benchmarks.experiment: yield ≥ 0.9)


def target_range(target: Target) -> TargetRange:
    """``target ± WINDOW`` for a number, the range itself otherwise."""
    return target if isinstance(target, TargetRange) else TargetRange.around(target, WINDOW)


# -- the problem ---------------------------------------------------------------------------
class Problem:
    """One oracle and its candidate source, shared by every method (subclasses: other problems)."""

    property = "gap"  # the oracle's value that is scored
    n_seeds = SEEDS_N  # random seed designs per seed

    def __init__(self, oracle: str, table: str | None, workdir: Path) -> None:
        self.kind = oracle
        mat = get_material("mos2")
        self.space = mat.space
        settings: dict[str, Any] = {"path": table} if oracle == "table" and table else {}
        if oracle == "mock":
            settings = {"workdir": str(workdir / "mock"), "latency_s": 0.0, "noise_eV": 0.0, "failure_rate": 0.0}
        self.settings = settings
        self.oracle = make_oracle(oracle, **settings)
        found = self.oracle
        self.pool = self.space.to_unit(self.space.from_frame(found.pool())) if isinstance(found, MeasuresPool) else None

    def measure(self, U: np.ndarray) -> np.ndarray:
        handles = self.oracle.submit(self.space.from_unit(U))
        return np.array([(r.values or {}).get(self.property, np.nan) for r in self.oracle.results(handles)])

    def uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.space.sample_unit(rng, n)

    def seeds(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, 12345])
        if self.pool is not None:
            return self.pool[rng.choice(len(self.pool), self.n_seeds, replace=False)]
        return self.uniform(rng, self.n_seeds)

    def candidates(self, seed: int, it: int, measured: np.ndarray) -> np.ndarray:
        if self.pool is None:
            return self.uniform(np.random.default_rng([seed, it, 777]), 5000)
        return self.pool[nearest_distance(self.pool, measured) > 1e-9]

    def campaign_sections(self) -> dict[str, Any]:
        """Sections of innloop's campaign config besides the benchmark's own (MoS2: none)."""
        return {}


def calls_to(U: np.ndarray, y: np.ndarray, target: Target, wanted: int = WANTED) -> int | None:
    hits = diverse_hits(U, y, target_range(target), SPACING)
    return int(hits[wanted - 1]) + 1 if len(hits) >= wanted else None


# -- baselines -----------------------------------------------------------------------------
def _gp_scores(U: np.ndarray, y: np.ndarray, C: np.ndarray, target: Target) -> np.ndarray:
    # each baseline's library only when that baseline runs
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood

    X = torch.as_tensor(U, dtype=torch.float64)
    Y = torch.as_tensor(y, dtype=torch.float64).unsqueeze(-1)
    kernel = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=U.shape[1]))
    gp = SingleTaskGP(X, Y, covar_module=kernel, outcome_transform=Standardize(1))
    fit_marginal_likelihood(ExactMarginalLogLikelihood(gp.likelihood, gp))
    r = target_range(target)
    return log_window_probability(gp, C, r.lo, r.hi)


def _tree_scores(U: np.ndarray, y: np.ndarray, C: np.ndarray, target: Target, seed: int) -> np.ndarray:
    from scipy.stats import norm  # as above: only for this baseline
    from sklearn.ensemble import ExtraTreesRegressor

    model = ExtraTreesRegressor(n_estimators=100, random_state=seed, n_jobs=1).fit(U, y)
    per_tree = np.stack([t.predict(C) for t in model.estimators_])
    mu, sd = per_tree.mean(0), np.maximum(per_tree.std(0), 1e-3)
    r = target_range(target)
    p = norm.cdf((r.hi - mu) / sd) - norm.cdf((r.lo - mu) / sd)
    return np.log(np.maximum(p, 1e-300))


def run_baseline(
    method: str, problem: Problem, target: Target, seed: int, max_calls: int, wanted: int = WANTED
) -> dict[str, Any]:
    """One baseline run; returns the calls to ``wanted`` diverse hits and the per-iteration overhead."""
    U = problem.seeds(seed)
    y = problem.measure(U)
    rng = np.random.default_rng([seed, 99])
    ens: SurrogateEnsemble | None = None
    overhead: list[float] = []
    it = 0
    r = target_range(target)
    while calls_to(U, y, r, wanted) is None and len(y) < max_calls:
        it += 1
        t0 = time.perf_counter()
        C = problem.candidates(seed, it, U)
        ok = np.isfinite(y)
        if method == "random":
            pick = rng.choice(len(C), BATCH, replace=False)
        else:
            if method == "gp":
                scores = _gp_scores(U[ok], y[ok], C, target)
            elif method == "trees":
                scores = _tree_scores(U[ok], y[ok], C, target, seed)
            else:
                if ens is None:
                    ens = SurrogateEnsemble(U.shape[1], EnsembleConfig(epochs=300, warm_epochs=100, seed=seed))
                ens.fit(U[ok], y[ok], warm_start=True)
                scores = log_window_probability(ens, C, r.lo, r.hi)
            hits = U[diverse_hits(U, np.nan_to_num(y, nan=-1), r, SPACING)]
            choice = choose_batch(
                scores[None], np.zeros(len(C)), C, [wanted], SelectionConfig(BATCH, 0.0, SPACING), hits=[hits]
            )
            pick = choice.index
        overhead.append(time.perf_counter() - t0)
        U = np.vstack([U, C[pick]])
        y = np.concatenate([y, problem.measure(C[pick])])
    return {"calls": calls_to(U, y, r, wanted), "measured": len(y), "overhead_s": overhead} | _hits(U, y, r)


def _hits(U: np.ndarray, y: np.ndarray, target: Target) -> dict[str, Any]:
    """The call number of each diverse hit (``curve``) and its unit-box design (``hits_u``)."""
    hits = diverse_hits(U, np.nan_to_num(y, nan=-1), target_range(target), SPACING)
    return {"curve": [int(h) + 1 for h in hits], "hits_u": np.round(U[hits], 6).tolist()}


# -- innloop -------------------------------------------------------------------------------
def innloop_config(
    problem: Problem,
    target: Target,
    seed: int,
    max_calls: int,
    designs: Path,
    exploration: float | None = None,
    wanted: int = WANTED,
    families: int | None = None,
) -> dict[str, Any]:
    loop: dict[str, Any] = {"batch_size": BATCH, "min_distance": SPACING}
    if exploration is not None:
        loop["exploration"] = exploration
    r = target_range(target)
    return problem.campaign_sections() | {
        "name": f"bench-{problem.kind}-{r.slug()}-{seed}".replace(".", "p"),
        "seed": seed,
        "targets": [_target_entry(r) | {"hits": wanted} | ({"families": families} if families else {})],
        "oracle": {"name": problem.kind, "settings": problem.settings},
        "initial": {"random": 0, "designs": str(designs)},
        "loop": loop,
        "budget": {"oracle_calls": max_calls},
        "ray": {"enabled": False},
        "retry": {"poll_interval_s": 0.01},
    }


def _target_entry(r: TargetRange) -> dict[str, float]:
    """A ``[[targets]]`` entry: ``value`` and ``window``, or the finite sides as ``low``/``high``."""
    if r.value is not None and r.window is not None:
        return {"value": r.value, "window": r.window}
    return {k: v for k, v in (("low", r.lo), ("high", r.hi)) if math.isfinite(v)}


def run_innloop(
    problem: Problem,
    target: Target,
    seed: int,
    max_calls: int,
    workdir: Path,
    exploration: float | None = None,
    wanted: int = WANTED,
    families: int | None = None,
) -> dict[str, Any]:
    """The real campaign (no Prefect, samples in process) from the same seed designs;
    ``families = 1``: hits by probability alone, not spread over families."""
    workdir.mkdir(parents=True, exist_ok=True)
    designs = workdir / f"seeds-{problem.kind}-{seed}.csv"
    problem.space.to_frame(problem.space.from_unit(problem.seeds(seed))).to_csv(
        designs, index=False, float_format="%.17g"
    )
    cfg = config_from_dict(innloop_config(problem, target, seed, max_calls, designs, exploration, wanted, families))
    run = run_campaign(cfg, workdir / "state", oracle=problem.oracle)
    U, y = ledger_arrays(run.state, arrival=True)  # the baselines count their calls in submission order too
    seconds = [sum(v for k, v in m["seconds"].items() if k != "measure") for m in run.state.history[1:]]
    return {"calls": calls_to(U, y, target, wanted), "measured": len(y), "overhead_s": seconds} | _hits(U, y, target)


# -- reporting -----------------------------------------------------------------------------
def summarise(runs: list[dict[str, Any]], max_calls: int, target_head: str = "target (eV)") -> str:
    """The markdown table; a run's ``target`` is a number (``:g``) or a label such as ``≥ 0.9``."""

    def fmt(v: float) -> str:
        return "not reached" if not np.isfinite(v) else f"{v:.0f}"

    rows = []
    df = pd.DataFrame(runs)
    for (oracle, target), part in df.groupby(["oracle", "target"], sort=False):
        for method, m in part.groupby("method", sort=False):
            calls = [c if c is not None else np.inf for c in m["calls"]]
            med = float(np.median(calls))
            label = target if isinstance(target, str) else format(target, "g")
            rows.append(
                f"| {oracle} | {label} | {method} | {fmt(med)} | {fmt(min(calls))}–{fmt(max(calls))} | "
                f"{' '.join(fmt(c) for c in calls)} | {np.median([np.mean(o) for o in m['overhead_s'] if o]):.2f} |"
            )
    head = (
        f"| oracle | {target_head} | method | median calls | range | per seed | s per iteration |\n"
        "|---|---|---|---|---|---|---|"
    )
    return head + "\n" + "\n".join(rows)


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib  # only with --plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend

    df = pd.DataFrame(runs)
    panels = list(df.groupby(["oracle", "target"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, ((oracle, target), part) in zip(axes[0], panels):
        for method, m in part.groupby("method", sort=False):
            grid = np.arange(0, int(max(max(c) if c else 0 for c in m["curve"]) + 1))
            counts = np.array([np.searchsorted(c, grid, side="right") for c in m["curve"]])
            ax.plot(grid, np.median(counts, 0), label=method)
        ax.axhline(WANTED, ls=":", color="grey")
        ax.set_title(f"{oracle}, {target:g} eV")
        ax.set_xlabel("oracle calls")
        ax.set_ylabel("diverse hits (median)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def overhead(oracle: str, table: str | None, sizes: tuple[int, ...], workdir: Path) -> str:
    """One warm iteration of innloop and one GP fit + scoring at each size (seconds, no oracle)."""
    lines = [
        "| oracle | observations | innloop s per iteration (retrain, sample, refine, choose, rest) "
        "| GP fit + score s |",
        "|---|---|---|---|",
    ]
    for n in sizes:
        problem = Problem(oracle, table, workdir / f"ov-{oracle}-{n}")
        rng = np.random.default_rng(n)
        U = (
            problem.pool[rng.choice(len(problem.pool), n, replace=False)]
            if problem.pool is not None
            else problem.uniform(rng, n)
        )
        designs = workdir / f"ov-{oracle}-{n}.csv"
        problem.space.to_frame(problem.space.from_unit(U)).to_csv(designs, index=False, float_format="%.17g")
        raw = innloop_config(problem, 1.0, 0, n + 2 * BATCH, designs) | {"name": f"overhead-{oracle}-{n}"}
        raw["targets"] = [{"value": 0.5, "hits": 10**4}, {"value": 1.0, "hits": 10**4}]
        run = run_campaign(config_from_dict(raw), workdir / "state", oracle=problem.oracle)
        m = run.state.history[-1]["seconds"]  # the second learned iteration: a warm start
        total = sum(v for k, v in m.items() if k != "measure")
        parts = ", ".join(f"{m.get(k, 0):.1f}" for k in ("retrain", "sample", "refine", "choose"))
        rest = total - sum(m.get(k, 0) for k in ("retrain", "sample", "refine", "choose"))
        y = problem.measure(U)
        C = problem.candidates(0, 1, U)
        t0 = time.perf_counter()
        _gp_scores(U, y, C, 1.0)
        lines.append(f"| {oracle} | {n} | {total:.1f} ({parts}, {rest:.1f}) | {time.perf_counter() - t0:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.campaign", description=__doc__.split("\n")[0])
    p.add_argument("--oracle", nargs="+", default=["table", "mock"], choices=["table", "mock"])
    p.add_argument("--targets", nargs="+", type=float, default=[1.0, 1.5])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--max-calls", type=int, default=600)
    p.add_argument("--random-max-calls", type=int, default=6000, help="random screening's own limit (it is cheap)")
    p.add_argument("--table", help="CSV for the table oracle (default: the bundled MoS2 data)")
    p.add_argument("--plot", help="write the hits-against-calls plot here (PNG)")
    p.add_argument("--json", help="write every run here")
    p.add_argument(
        "--exploration",
        type=float,
        default=0.0,
        help="innloop's exploration share (default 0: the goal is hits, and the spacing rules already spread each "
        "batch; campaigns default to 0.1)",
    )
    p.add_argument("--overhead", action="store_true", help="only measure the loop overhead at 200 and 2000")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="innloop-bench-") as tmp:
        work = Path(tmp)
        if args.overhead:
            for oracle in args.oracle:
                print(overhead(oracle, args.table, (200, 2000), work), flush=True)
            return 0
        runs: list[dict[str, Any]] = []
        for oracle in args.oracle:
            problem = Problem(oracle, args.table, work)
            for target in args.targets:
                for seed in range(args.seeds):
                    for method in args.methods:
                        t0 = time.perf_counter()
                        if method == "innloop":
                            out = run_innloop(
                                problem,
                                target,
                                seed,
                                args.max_calls,
                                work / f"{oracle}-{target}-{seed}",
                                args.exploration,
                            )
                        else:
                            limit = args.random_max_calls if method == "random" else args.max_calls
                            out = run_baseline(method, problem, target, seed, limit)
                        out |= {
                            "oracle": oracle,
                            "target": target,
                            "seed": seed,
                            "method": method,
                            "wall_s": time.perf_counter() - t0,
                        }
                        runs.append(out)
                        print(
                            f"{oracle} {target:g} seed {seed} {method}: {out['calls']} calls ({out['wall_s']:.0f} s)",
                            file=sys.stderr,
                            flush=True,
                        )
        print(summarise(runs, args.max_calls))
        if args.plot:
            plot(runs, Path(args.plot))
        if args.json:
            Path(args.json).write_text(json.dumps(runs, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
