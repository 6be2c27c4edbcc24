"""A new material with real DFT: WS2 from nothing, with and without MoS2 transfer.

Why this benchmark. MatDesINNe needed 10,800 VASP runs before it designed anything; a
closed loop should design a material it has never seen in a few hundred. The ground
truth is the WS2 replay table, every row a real GPAW calculation
(`scripts/measure_ws2_table.py`, shipped in ``agent/data/ws2/``), replayed by the
``table`` oracle: every method meets the same answers, and only table rows can be
measured (pool-based active learning).

Protocol (the rules of `benchmarks.campaign`; every method, same seeds, in one run):

- cold start: no prior data; ``--initial`` random table rows per seed (default 20, the
  same rows for every method), then batches of 10;
- a *hit* is a gap (GPAW's own scale) within ±0.1 eV of the target; hits count when
  every two are at least 0.1 apart in the unit box (`agent.campaign.state.diverse_hits`,
  arrival order);
- the score is the number of oracle calls, the initial rows included, when the 20th
  diverse hit arrives (``--hits``); "not reached" when ``--max-calls`` ran out first;
- a target whose window holds fewer diverse rows than that (uniform WS2 designs seldom
  land near 1.5 eV) is run for ``--scarce-hits`` (default 5), in tables of its own.

Methods: ``random`` screening (table rows in random order); ``gp`` (BoTorch SingleTaskGP
refitted every batch, window probability, innloop's batch rules; `benchmarks.campaign`);
``innloop`` (the campaign, `agent.campaign.runner.run_campaign`, material ``ws2``, the
table oracle, no prior data, exploration share 0 -- the benchmark rewards hits only);
``innloop-mos2`` (the same campaign with ``[transfer] source = "mos2"``: the bundled
MoS2 VASP data inform its models, never counted as a measurement).

``--workers 2`` runs two at once (one process and one thread each; the figures are the
same as one at a time). Tables printed: the WS2 table itself (rows, failures, metals,
rows per target window, DFT time), cold start, and transfer. Run ``python -m
benchmarks.new_material --seeds 5 --json runs.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from agent.campaign.state import diverse_hits
from agent.campaign.transfer import CACHE_ENV
from agent.core.materials import get_material
from agent.core.targets import TargetRange
from benchmarks.campaign import SPACING, Problem, run_baseline, run_innloop, summarise
from oracles import make_oracle
from oracles.base import MeasuresPool

__all__ = ["METHODS", "Job", "WS2Problem", "main", "reachable", "run_jobs", "table_summary"]

METHODS = ("random", "gp", "innloop", "innloop-mos2")
INITIAL, HITS, WINDOW = 20, 20, 0.1
SHIPPED = Path(__file__).resolve().parents[1] / "agent" / "data" / "ws2" / "ws2_gpaw_table.csv"
# What each innloop method adds to the campaign file (beside the benchmark's own sections).
SECTIONS: dict[str, dict[str, Any]] = {
    "innloop": {},
    "innloop-mos2": {"transfer": {"source": "mos2"}},
}


class WS2Problem(Problem):
    """The WS2 replay table through the ``table`` oracle; ``extra``: sections of the campaign
    file for the innloop method being run (`SECTIONS`)."""

    def __init__(self, table: Path, n_seeds: int = INITIAL) -> None:
        # not Problem.__init__: that one builds the MoS2 material and its oracle
        material = get_material("ws2")
        self.kind, self.space, self.n_seeds = "table", material.space, n_seeds
        self.settings: dict[str, Any] = {"path": str(table), "material": "ws2"}
        self.oracle = make_oracle("table", **self.settings)
        assert isinstance(self.oracle, MeasuresPool)  # the table oracle measures its own rows
        self.pool: np.ndarray = self.space.to_unit(self.space.from_frame(self.oracle.pool()))
        self.extra: dict[str, Any] = {}

    def campaign_sections(self) -> dict[str, Any]:
        return {"material": "ws2"} | self.extra

    def pool_gaps(self) -> np.ndarray:
        """Every pool row's gap ``(n,)``, in `pool` order, as the oracle answers it (free)."""
        oracle = self.oracle
        assert isinstance(oracle, MeasuresPool)
        results = oracle.results(oracle.submit(oracle.pool()))
        return np.array([(r.values or {}).get("gap", np.nan) for r in results], dtype=np.float64)


def table_summary(table: Path, targets: list[float]) -> str:
    """The WS2 table in one markdown table: rows, metals, rows per window, DFT seconds."""
    df = pd.read_csv(table)
    failures = table.with_name("failures.csv")
    failed = len(pd.read_csv(failures)) if failures.exists() and failures.stat().st_size > 1 else 0
    wall = df["wall_s"].to_numpy(dtype=float) if "wall_s" in df else np.array([np.nan])
    windows = ", ".join(f"{int((abs(df['gap'] - t) <= WINDOW).sum())} at {t:g} eV" for t in targets)
    lines = [
        "| rows | failed | metals (gap 0) | rows in ±0.1 eV | GPAW s per row (median) | GPAW hours (total) |",
        "|---|---|---|---|---|---|",
        f"| {len(df)} | {failed} | {int((df['gap'] <= 0).sum())} | {windows} | {np.nanmedian(wall):.1f} | "
        f"{np.nansum(wall) / 3600:.2f} |",
    ]
    return "\n".join(lines)


def reachable(problem: WS2Problem, targets: list[float], hits: int, scarce: int) -> dict[float, int]:
    """Each target that can be run, with the diverse hits its runs ask for.

    ``hits`` where the table holds that many diverse rows in the window (the hits' own rule,
    `agent.campaign.state.diverse_hits`); else ``scarce`` where it holds that many (a rare
    window still gets a figure, in a table of its own); the others are named and skipped: no
    method could reach them, and random screening would read the whole table for nothing."""
    gap = problem.pool_gaps()
    keep: dict[float, int] = {}
    for t in targets:
        window = TargetRange.around(t, WINDOW)
        diverse = len(diverse_hits(problem.pool, gap, window, SPACING))
        if diverse >= hits:
            keep[t] = hits
            continue
        inside = int(window.contains(gap).sum())
        short = (
            f"the table holds {inside} rows within ±{WINDOW:g} eV ({diverse} diverse), fewer than the {hits} hits asked"
        )
        if 0 < scarce <= diverse:
            keep[t] = scarce
            print(f"\n{t:g} eV: {short}; run for {scarce} diverse hits (--scarce-hits)")
        else:
            print(f"\n{t:g} eV skipped: {short}")
    return keep


@dataclass(frozen=True)
class Job:
    """One run: a method at a target with a seed, asking for ``hits`` diverse hits, under the
    command line's settings."""

    args: argparse.Namespace
    target: float
    seed: int
    method: str
    hits: int


# a process's tables, each read once; keyed by the file's size and time too, so a table
# rewritten at the same path is read again
_PROBLEMS: dict[tuple[str, int, int, int], WS2Problem] = {}


def problem_for(table: Path, initial: int) -> WS2Problem:
    """The WS2 problem over ``table``, read once per process (and again once rewritten)."""
    stat = table.stat()
    key = (str(table), initial, stat.st_size, stat.st_mtime_ns)
    if key not in _PROBLEMS:
        _PROBLEMS[key] = WS2Problem(table, initial)
    return _PROBLEMS[key]


def run_one(job: Job, tmp: Path) -> dict[str, Any]:
    """``job``'s run: the calls to the hits and its figures (`run_innloop`, `run_baseline`)."""
    torch.set_num_threads(1)
    a, t0 = job.args, time.perf_counter()
    problem = problem_for(a.table, a.initial)
    if job.method in SECTIONS:
        problem.extra = SECTIONS[job.method]
        work = tmp / f"{job.method}-{job.target}-{job.seed}"
        out = run_innloop(problem, job.target, job.seed, a.max_calls, work, a.exploration, job.hits)
    else:
        limit = len(problem.pool) if job.method == "random" else a.max_calls
        out = run_baseline(job.method, problem, job.target, job.seed, limit, job.hits)
    out |= {"oracle": "ws2 table", "target": job.target, "seed": job.seed, "method": job.method}
    out |= {"hits": job.hits, "wall_s": time.perf_counter() - t0}
    line = f"{job.target:g} seed {job.seed} {job.method}: {out['calls']} calls ({out['wall_s']:.0f} s)"
    print(line, file=sys.stderr, flush=True)
    return out


def run_jobs(jobs: list[Job], tmp: Path, workers: int) -> list[dict[str, Any]]:
    """Every job's run, in ``jobs``' order; ``workers > 1``: that many processes at once.

    Why the first transfer run goes alone: it trains the MoS2 source model into the shared
    cache, which every later transfer run then reads instead of training it again. Each run
    seeds itself, so a run's figures do not depend on the process it ran in."""
    if workers <= 1:
        return [run_one(job, tmp) for job in jobs]
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers: one thread each
    first = next((i for i, j in enumerate(jobs) if j.method == "innloop-mos2"), None)
    done: dict[int, dict[str, Any]] = {} if first is None else {first: run_one(jobs[first], tmp)}
    rest = [i for i in range(len(jobs)) if i not in done]
    # spawn, not fork: a forked child of a process that has started torch's threads can hang
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {i: pool.submit(run_one, jobs[i], tmp) for i in rest}
        try:
            done |= {i: f.result() for i, f in futures.items()}
        except BaseException:  # one run failed (or ^C): the queued runs are not started
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [done[i] for i in range(len(jobs))]


def print_tables(runs: list[dict[str, Any]], hits: int, max_calls: int) -> None:
    """The cold-start table and, where innloop-mos2 ran, the transfer table of ``runs``."""
    cold = [r for r in runs if r["method"] != "innloop-mos2"]
    transfer = [r for r in runs if r["method"] in SECTIONS]
    if cold:
        print(f"\nCold start: oracle calls to {hits} diverse hits\n")
        print(summarise(cold, max_calls))
    if any(r["method"] == "innloop-mos2" for r in transfer):
        print(f"\nTransfer from the MoS2 VASP data: oracle calls to {hits} diverse hits\n")
        print(summarise(transfer, max_calls))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.new_material", description=__doc__.split("\n")[0])
    p.add_argument("--table", type=Path, default=SHIPPED, help="the WS2 table (default: the shipped one)")
    p.add_argument("--targets", nargs="+", type=float, default=[1.0, 1.5, 0.5])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--hits", type=int, default=HITS, help=f"diverse hits wanted (default {HITS})")
    p.add_argument(
        "--scarce-hits",
        type=int,
        default=5,
        help="diverse hits asked at a target whose window holds fewer than --hits (default 5; 0: skip it)",
    )
    p.add_argument("--initial", type=int, default=INITIAL, help=f"random initial rows (default {INITIAL})")
    p.add_argument("--max-calls", type=int, default=600)
    p.add_argument("--exploration", type=float, default=0.0, help="innloop's exploration share (default 0)")
    p.add_argument("--json", help="write every run here")
    p.add_argument("--workers", type=int, default=1, help="runs at once, one process and one thread each (default 1)")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "innloop-bench-cache",
        help=f"where the MoS2 source model is trained once for every seed and run (unless ${CACHE_ENV} is set)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault(CACHE_ENV, str(args.cache))  # every seed's campaign shares one trained source
    print(table_summary(args.table, args.targets), flush=True)
    problem = problem_for(args.table, args.initial)
    targets = reachable(problem, args.targets, args.hits, args.scarce_hits)
    if not targets:
        print("\nno target to run: measure a larger table or ask fewer --hits", file=sys.stderr)
        return 1
    jobs = [
        Job(args, target, seed, method, hits)
        for target, hits in targets.items()
        for seed in range(args.seeds)
        for method in args.methods
    ]
    with tempfile.TemporaryDirectory(prefix="innloop-bench-ws2-") as tmp:
        runs = run_jobs(jobs, Path(tmp), args.workers)
    for hits in sorted(set(targets.values()), reverse=True):  # the asked hits first, scarce targets after
        print_tables([r for r in runs if r["hits"] == hits], hits, args.max_calls)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
