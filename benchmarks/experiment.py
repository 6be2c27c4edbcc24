"""Experiment benchmark: oracle calls until 10 diverse hits on the recipe example, innloop
against random screening and a GP, side by side.

The problem is the experiment example, ``agent/configs/experiment.toml``: its ``[space]``
(a recipe: two categories, an integer, four numbers of which two on a log scale, a reagent
budget), its target (yield ≥ 0.9) and its hit count (10), measured by the recipe emulator
(`oracles.testing.recipe`, the ``recipe`` oracle) in process: the same closed-form yield
the example's lab server serves over HTTP, without the server.

Protocol (every method, same seeds, in one run; the rules of `benchmarks.campaign`):

- 30 uniform valid seed recipes per seed (``--initial``), the same for every method,
  then batches of 10;
- a *hit* is a yield ≥ 0.9; hits count when every two are at least 0.1 apart in the unit
  box (one-hot categories, log parameters in log10; `agent.campaign.state.diverse_hits`,
  arrival order);
- the score is the number of oracle calls, seeds included, when the 10th diverse hit
  arrives (``--hits``); "not reached" when ``--max-calls`` ran out first (random
  screening has its own, larger limit: it is cheap).

Methods: ``random`` screening (10 of 5,000 fresh uniform valid recipes per batch); ``gp``
(BoTorch SingleTaskGP, Matern-5/2 with one length scale per unit-box coordinate, refitted
every batch, log probability of yield ≥ 0.9 over 5,000 fresh uniform valid recipes, the
batch picked by innloop's spacing rules, `agent.design.acquisition.choose_batch`);
``innloop`` (the campaign, `agent.campaign.runner.run_campaign`, with the example's
``[space]``, target and ``[models]``, the recipe oracle, the seed recipes as
``initial.designs``, no Ray, the budget ``--max-calls`` and an exploration share of 0,
``--exploration``: the benchmark rewards hits only).

Run ``python -m benchmarks.experiment --seeds 5 --json runs.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from agent.campaign.config import CampaignConfig, load_config
from benchmarks.campaign import Problem, run_baseline, run_innloop, summarise
from oracles import make_oracle

__all__ = ["METHODS", "RecipeProblem", "experiment_config", "main"]

METHODS = ("random", "gp", "innloop")
SEEDS = 30  # random seed recipes per seed


def experiment_config() -> CampaignConfig:
    """The shipped experiment example (``agent/configs/experiment.toml``)."""
    with resources.as_file(resources.files("agent") / "configs" / "experiment.toml") as path:
        return load_config(path)


class RecipeProblem(Problem):
    """The experiment example's recipe space, measured by the recipe emulator in process."""

    property = "yield"

    def __init__(self, config: CampaignConfig, n_seeds: int = SEEDS) -> None:
        # not Problem.__init__: that one builds the MoS2 material and its oracle
        material = config.design_material()
        self.kind, self.space, self.settings, self.pool = "recipe", material.space, {}, None
        self.oracle = make_oracle("recipe", material=material)  # refuses a space it does not measure
        self.n_seeds = n_seeds
        data = config.to_dict()
        self.sections = {"space": data["space"], "models": data["models"]}

    def campaign_sections(self) -> dict[str, Any]:
        return dict(self.sections)


def main(argv: list[str] | None = None) -> int:
    config = experiment_config()
    goal = config.targets[0]
    p = argparse.ArgumentParser(prog="benchmarks.experiment", description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--hits", type=int, default=goal.hits, help=f"diverse hits wanted (default {goal.hits})")
    p.add_argument("--initial", type=int, default=SEEDS, help=f"random seed recipes (default {SEEDS})")
    p.add_argument("--max-calls", type=int, default=600)
    p.add_argument("--random-max-calls", type=int, default=6000, help="random screening's own limit (it is cheap)")
    p.add_argument("--json", help="write every run here")
    p.add_argument("--exploration", type=float, default=0.0, help="innloop's exploration share (default 0)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    problem = RecipeProblem(config, args.initial)
    target = goal.range
    label = target.label()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="innloop-bench-experiment-") as tmp:
        for seed in range(args.seeds):
            for method in args.methods:
                t0 = time.perf_counter()
                if method == "innloop":
                    work = Path(tmp) / f"seed-{seed}"
                    out = run_innloop(problem, target, seed, args.max_calls, work, args.exploration, args.hits)
                else:
                    limit = args.random_max_calls if method == "random" else args.max_calls
                    out = run_baseline(method, problem, target, seed, limit, args.hits)
                out |= {"oracle": "recipe", "target": label, "seed": seed, "method": method}
                out |= {"hits": args.hits, "wall_s": time.perf_counter() - t0}
                runs.append(out)
                line = f"seed {seed} {method}: {out['calls']} calls ({out['wall_s']:.0f} s)"
                print(line, file=sys.stderr, flush=True)
    print(summarise(runs, args.max_calls, target_head="target (yield)"))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, default=float, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
