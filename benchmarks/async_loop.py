"""Asynchronous against batch mode, on wall-clock time, with heavy-tailed run times.

Why this benchmark. On a cluster, DFT run times vary several-fold and failed jobs are re-sent
after a backoff; a batch waits for its slowest job while the other slots stand idle. The
asynchronous loop (`agent.campaign.refill`) keeps the oracle busy instead. What it costs is
information: a refill chooses before the results of the designs in flight are known, so it
may need more oracle calls. This measures both, side by side in one run, same seeds.

Protocol:

- the mock oracle (MoS2 emulator) with log-normal run times (median ``--median-s``,
  ``latency_sigma`` ``--sigma``, default 1.1: the 95th percentile 6.1 times the median) and
  ``--failures`` of the jobs failing for infrastructure reasons (re-sent after a backoff);
  every outcome and run time is a pure function of the oracle seed, the design and the
  attempt, so both modes meet the same oracle;
- per seed, the same ``--initial`` uniform random designs first, then the campaign
  (`agent.campaign.runner.run_campaign`, in process, no Prefect, exploration share 0: the
  benchmark rewards hits only; the models' sizes are ``--models``, the same for both modes);
- at each ``--in-flight`` K: ``batch`` mode with batches of K, and ``async`` mode with
  ``max_in_flight = K`` and ``refill = K / 4`` (at least 1); ``max_in_flight = K`` caps
  the batch mode's first batch too;
- a hit is a gap within ±0.1 eV of ``--target``; hits count when every two are at least
  0.1 apart in the unit box (`agent.campaign.state.diverse_hits`, in arrival order); the
  scores are the wall-clock seconds from the campaign's start to the arrival of the
  ``--hits``-th diverse hit, and the oracle calls (ledger results, failures included) by
  then; the run stops there (jobs still at the oracle are not waited for, in either mode);
- also per run: how many jobs were at the oracle on average until then (the sum of the
  recorded jobs' times at the oracle over the wall time), and the seconds of one
  iteration's planning (retrain, sample, refine, choose).

``--workers 2`` runs two campaigns at once (one process and one thread each), in the order
seed, K, mode: the two modes of a seed and K run next to each other, under the same load.
Run ``python -m benchmarks.async_loop --seeds 5 --workers 2 --json async.json``.
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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.campaign.config import config_from_dict
from agent.campaign.runner import open_campaign, run_campaign
from agent.campaign.state import CampaignState, diverse_hits, ledger_arrays
from agent.campaign.store import CampaignStore
from agent.core.materials import get_material
from agent.core.targets import TargetRange
from oracles.mock import MockOracle

__all__ = ["MODES", "main", "run_one", "summarise"]

MODES = ("batch", "async")
SPACING, WINDOW = 0.1, 0.1
PLANNING = ("retrain", "sample", "refine", "choose")
# the models of both modes (`--models small`: a quicker campaign on a busy machine; `tiny`: the
# suite's smoke run), and the generator samples per target they draw (None: the default)
MODELS: dict[str, tuple[dict[str, int], int | None]] = {
    "default": ({}, None),
    "small": ({"members": 3, "surrogate_epochs": 150, "surrogate_warm_epochs": 50, "generator_epochs": 100}, None),
    "tiny": ({"members": 2, "surrogate_epochs": 20, "surrogate_warm_epochs": 5, "generator_epochs": 10}, 200),
}


class _Reached(Exception):
    """The wanted hits are in: the run ends here (raised from the campaign's iteration hook)."""


def config(args: argparse.Namespace, mode: str, k: int, seed: int, work: Path, designs: Path) -> dict[str, Any]:
    loop: dict[str, Any] = {"mode": mode, "batch_size": k, "max_in_flight": k, "min_distance": SPACING}
    loop |= {"exploration": 0.0} | ({"refill": max(1, k // 4)} if mode == "async" else {})
    models, samples = MODELS[args.models]
    if samples is not None:
        loop["samples_per_target"] = samples
    settings = {
        "workdir": str(work / "mock"),
        "latency_s": args.median_s,
        "latency_sigma": args.sigma,
        "failure_rate": args.failures,
        "infrastructure_share": 1.0,
        "seed": seed,
    }
    return {
        "name": f"async-bench-{mode}-{k}-{seed}",
        "seed": seed,
        "targets": [{"value": args.target, "window": WINDOW, "hits": args.hits}],
        "oracle": {"name": "mock", "settings": settings},
        "initial": {"random": 0, "designs": str(designs)},
        "loop": loop,
        "models": models,
        "budget": {"oracle_calls": args.max_calls},
        "ray": {"enabled": False},
        "retry": {"poll_interval_s": 0.05, "backoff_s": 1.0, "max_attempts": 3},
    }


def _arrivals(state: CampaignState, target: TargetRange) -> np.ndarray:
    U, y = ledger_arrays(state, arrival=True)
    return diverse_hits(U, np.nan_to_num(y, nan=-1.0), target, SPACING)


def run_one(args: argparse.Namespace, mode: str, k: int, seed: int, tmp: Path) -> dict[str, Any]:
    """One campaign until ``args.hits`` diverse hits arrived (or the call budget ran out)."""
    torch.set_num_threads(1)
    space = get_material("mos2").space
    work = tmp / f"{mode}-{k}-{seed}"
    work.mkdir(parents=True)
    designs = work / "initial.csv"
    X = space.from_unit(space.sample_unit(np.random.default_rng([seed, 4242]), args.initial))
    space.to_frame(X).to_csv(designs, index=False, float_format="%.17g")
    cfg = config_from_dict(config(args, mode, k, seed, work, designs))
    target = TargetRange.around(args.target, WINDOW)

    def enough(state: CampaignState, _store: CampaignStore) -> None:
        if len(_arrivals(state, target)) >= args.hits:
            raise _Reached

    started = time.time()
    reached = True
    try:
        run_campaign(cfg, work / "state", on_iteration=enough)
    except _Reached:
        pass
    else:
        reached = False
    store = CampaignStore(work / "state", cfg.name)
    records = list(store.ledger.records())  # arrival order
    _, state = open_campaign(cfg, work / "state")
    hits = _arrivals(state, target)
    last = int(hits[args.hits - 1]) if reached and len(hits) >= args.hits else len(records) - 1
    until = records[: last + 1]
    wall = until[-1].time - started
    busy = sum(r.time - r.result.handle.submitted_at for r in until)
    planning = [sum(m["seconds"].get(s, 0.0) for s in PLANNING) for m in state.history if m.get("seconds")]
    mock = MockOracle(workdir=work / "mock", latency_s=args.median_s, latency_sigma=args.sigma, seed=seed)
    jobs = [
        (p.stem.rsplit("-", 1)[-1], json.loads(p.read_text())["attempt"])
        for p in (work / "mock" / "jobs").glob("*.json")
    ]
    lat = [mock.run_time(key, int(attempt)) for key, attempt in jobs]
    out = {
        "mode": mode,
        "in_flight": k,
        "seed": seed,
        "reached": reached,
        "calls": last + 1 if reached else None,
        "wall_s": wall if reached else None,
        "mean_at_oracle": busy / wall if wall > 0 else 0.0,
        "iterations": len(state.history),
        "planning_s": float(np.mean(planning)) if planning else 0.0,
        "latencies": [float(v) for v in lat if v is not None],
    }
    print(
        f"K={k} seed {seed} {mode}: {out['calls']} calls, {wall:.0f} s, "
        f"{out['mean_at_oracle']:.1f} at the oracle, {out['iterations']} iterations",
        file=sys.stderr,
        flush=True,
    )
    return out


def _fmt(v: float | None) -> str:
    return "not reached" if v is None or not np.isfinite(v) else f"{v:.0f}"


def summarise(runs: list[dict[str, Any]], hits: int) -> str:
    """The markdown table of ``runs`` and, per K, async's medians over batch's."""
    head = (
        f"| in flight | mode | median s to {hits} hits | per seed (s) | median calls | per seed | "
        "mean jobs at oracle | planning s per iteration | iterations |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines, ratios = [head], []
    med: dict[tuple[int, str], tuple[float, float]] = {}
    for k in sorted({r["in_flight"] for r in runs}):
        for mode in MODES:
            part = [r for r in runs if r["in_flight"] == k and r["mode"] == mode]
            if not part:
                continue
            wall = [r["wall_s"] if r["wall_s"] is not None else np.inf for r in part]
            calls = [r["calls"] if r["calls"] is not None else np.inf for r in part]
            med[(k, mode)] = (float(np.median(wall)), float(np.median(calls)))
            lines.append(
                f"| {k} | {mode} | {_fmt(med[(k, mode)][0])} | {' '.join(_fmt(w) for w in wall)} | "
                f"{_fmt(med[(k, mode)][1])} | {' '.join(_fmt(c) for c in calls)} | "
                f"{np.median([r['mean_at_oracle'] for r in part]):.1f} | "
                f"{np.median([r['planning_s'] for r in part]):.2f} | "
                f"{np.median([r['iterations'] for r in part]):.0f} |"
            )
        if (k, "batch") in med and (k, "async") in med:
            (wb, cb), (wa, ca) = med[(k, "batch")], med[(k, "async")]
            ratios.append(f"- {k} in flight: async wall-clock {wa / wb:.2f}× batch's, oracle calls {ca / cb:.2f}×")
    lat = np.concatenate([r["latencies"] for r in runs if r["latencies"]] or [np.zeros(0)])
    tail = ""
    if len(lat):
        p50, p95 = np.percentile(lat, [50, 95])
        tail = f"\n\nRun times drawn ({len(lat)} jobs): median {p50:.2f} s, 95th percentile {p95:.2f} s"
        tail += f" ({p95 / p50:.1f}× the median)"
    return "\n".join(lines) + "\n\n" + "\n".join(ratios) + tail


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.async_loop", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--in-flight", nargs="+", type=int, default=[8, 32], help="jobs at the oracle (default 8 32)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--target", type=float, default=1.0)
    p.add_argument("--hits", type=int, default=20)
    p.add_argument("--initial", type=int, default=20)
    p.add_argument("--median-s", type=float, default=3.0, help="the run time's median (default 3 s)")
    p.add_argument("--sigma", type=float, default=1.1, help="the run time's log-normal sigma (default 1.1)")
    p.add_argument("--failures", type=float, default=0.1, help="share of jobs failing for infrastructure reasons")
    p.add_argument("--max-calls", type=int, default=600)
    p.add_argument("--models", choices=sorted(MODELS), default="default")
    p.add_argument("--json", help="write every run here")
    p.add_argument("--workers", type=int, default=1, help="campaigns at once, one process and one thread each")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers: one thread each
    # seed by seed, K by K, the two modes next to each other: both meet the same machine load
    order = [(mode, k, seed) for seed in range(args.seeds) for k in args.in_flight for mode in args.modes]
    with tempfile.TemporaryDirectory(prefix="innloop-bench-async-") as tmp:
        if args.workers <= 1:
            runs = [run_one(args, mode, k, seed, Path(tmp)) for mode, k, seed in order]
        else:  # spawn, not fork: a forked child of a process that has started torch's threads can hang
            with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                runs = list(pool.map(run_one, *zip(*[(args, mode, k, seed, Path(tmp)) for mode, k, seed in order])))
    print(f"\nWall-clock and oracle calls to {args.hits} diverse hits at {args.target:g} eV\n")
    print(summarise(runs, args.hits))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
