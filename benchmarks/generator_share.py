"""Generator share benchmark: does the campaign's cINN still generate what it is asked for?

On a mixed space (one-hot categories, an integer, log scales, a budget) a conditional
generator could degrade into a sampler of the training data that ignores its condition.
This measures, per problem, target and seed, the share of its samples that land in the
target range, against uniform valid designs, judged by the campaign's own surrogate:

- ``experiment``: the experiment example (``agent/configs/experiment.toml``: the recipe
  space, target yield ≥ 0.9); training data: ``--recipe-train`` uniform valid recipes
  (default 200, as a campaign could have, and 500) measured by the recipe emulator
  (`oracles.testing.recipe.recipe_yield`); held out: 500 more;
- ``mos2``: the bundled MoS2 data (`agent.core.materials.load_dataset`, exact duplicates
  dropped), targets 1.0 ± 0.1 and 1.5 ± 0.1 eV; training data: ``--mos2-train`` random
  rows (default 3,000); held out: the other rows.

Per problem, training size and seed (0..4) the campaign's models are fitted as
`agent.campaign.plan` fits them, with the campaign defaults (`agent.campaign.config.ModelSpec`):
the `SurrogateEnsemble` and the cINN (`generators.make_generator`, `TrainConfig`). The cINN
is conditioned on each target's anchor (`TargetRange.anchor` of the training values, as
`agent.campaign.plan.anchors`) and draws ``--samples`` (2,000) designs the way the campaign
does (`agent.design.sampling.sample_job`: none when the anchor lies beyond every training
value, e.g. no training recipe reached a yield of 0.9), snapped onto real designs
(`DesignSpace.snap_unit`); those that are still not valid (outside the bounds, breaking a
constraint) are dropped and counted. ``--samples`` uniform valid designs
(`DesignSpace.sample_unit`) are the reference. Reported: the share of the ``--samples``
asked for (invalid and undrawn ones count as misses) whose surrogate mean lies in the
target range, cINN and uniform; for the experiment also the share judged by the emulator
itself (the truth); the cINN's invalid share; the seeds where it drew nothing. A second
table says how far the surrogate can be trusted as the judge: on the held-out rows, its
MAE and the precision and recall of "mean in range".

Run ``python -m benchmarks.generator_share --json share.json`` (``--quick``: tiny
training budgets, a smoke run, not figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from agent.campaign.config import ModelSpec
from agent.core.materials import get_material
from agent.core.space import DesignSpace
from agent.core.targets import TargetRange
from agent.design.sampling import sample_job
from agent.design.trained import training_data
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from benchmarks.experiment import experiment_config
from generators import make_generator
from generators.base import TrainConfig
from oracles.testing.recipe import recipe_yield

__all__ = ["PROBLEMS", "Problem", "main", "measure", "problem"]

PROBLEMS = ("experiment", "mos2")
HELD_OUT_RECIPES = 500
# ``--quick``: tiny training budgets (a smoke run)
QUICK = ModelSpec(members=2, surrogate_epochs=3, surrogate_warm_epochs=1, generator_epochs=3, generator_warm_epochs=1)
Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # training U, y; held-out U, y


@dataclass(frozen=True)
class Problem:
    """A space, its targets and a source of training and held-out data ``(U, y)``."""

    name: str
    space: DesignSpace
    targets: tuple[TargetRange, ...]
    floor: float | None
    ceiling: float | None
    data: Callable[[int, int], Split]  # (seed, n training rows) -> the split
    truth: Callable[[np.ndarray], np.ndarray] | None = None  # physical designs -> true values, where known
    unit: str = ""


def problem(name: str) -> Problem:
    """The ``experiment`` (recipe) or ``mos2`` problem."""
    if name == "experiment":
        config = experiment_config()
        material = config.design_material()
        space = material.space

        def recipes(seed: int, n: int) -> Split:
            U = space.sample_unit(np.random.default_rng([seed, 2024]), n + HELD_OUT_RECIPES)
            y = recipe_yield(space.from_unit(U))
            return U[:n], y[:n], U[n:], y[n:]

        targets = tuple(t.range for t in config.targets)
        return Problem(
            name, space, targets, material.target_lower_bound, material.target_upper_bound, recipes, recipe_yield
        )
    material = get_material("mos2")
    obs = training_data(material)
    U_all, y_all = obs.U, obs.y

    def rows(seed: int, n: int) -> Split:
        order = np.random.default_rng([seed, 2024]).permutation(len(y_all))
        return U_all[order[:n]], y_all[order[:n]], U_all[order[n:]], y_all[order[n:]]

    targets = (TargetRange.around(1.0, 0.1), TargetRange.around(1.5, 0.1))
    return Problem(
        name, material.space, targets, material.target_lower_bound, material.target_upper_bound, rows, unit="eV"
    )


def fit_models(U: np.ndarray, y: np.ndarray, seed: int, m: ModelSpec) -> tuple[SurrogateEnsemble, Any]:
    """The campaign's surrogate and generator, fitted from scratch as `agent.campaign.plan` fits them."""
    cfg = EnsembleConfig(members=m.members, epochs=m.surrogate_epochs, warm_epochs=m.surrogate_warm_epochs, seed=seed)
    surrogate = SurrogateEnsemble(U.shape[1], cfg)
    surrogate.fit(U, y, warm_start=True)
    generator = make_generator(m.generator, U.shape[1])
    tcfg = TrainConfig(epochs=m.generator_epochs, warm_epochs=m.generator_warm_epochs, seed=seed)
    generator.fit(torch.as_tensor(U, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32), config=tcfg)
    return surrogate, generator


def _shares(
    p: Problem, surrogate: SurrogateEnsemble, r: TargetRange, U: np.ndarray, drawn: int
) -> dict[str, float | None]:
    """Share of ``drawn`` samples (``U``: the valid ones) in ``r``: by the surrogate, and by the truth."""
    surrogate_share = float(r.contains(surrogate.predict(U)[0]).sum()) / drawn if len(U) else 0.0
    true: float | None = None
    if p.truth is not None:
        true = float(r.contains(p.truth(p.space.from_unit(U))).sum()) / drawn if len(U) else 0.0
    return {"surrogate": surrogate_share, "true": true}


def measure(p: Problem, n_train: int, seed: int, samples: int, m: ModelSpec) -> list[dict[str, Any]]:
    """Rows for one problem, training size and seed: per target, cINN and uniform shares."""
    U, y, U_test, y_test = p.data(seed, n_train)
    t0 = time.perf_counter()
    surrogate, generator = fit_models(U, y, seed, m)
    fit_s = time.perf_counter() - t0
    mean_test = surrogate.predict(U_test)[0]
    out: list[dict[str, Any]] = []
    for k, r in enumerate(p.targets):
        anchor = r.anchor(y, p.floor, p.ceiling)
        raw = sample_job(generator, (anchor, samples, seed * 100 + k))  # nothing beyond its training values
        snapped = p.space.snap_unit(raw)
        valid = p.space.valid_mask(p.space.from_unit(snapped))
        uniform = p.space.sample_unit(np.random.default_rng([seed, k, 31]), samples)
        pred, true = r.contains(mean_test), r.contains(y_test)
        judge = {
            "mae": float(np.abs(mean_test - y_test).mean()),
            "precision": float((pred & true).sum() / max(pred.sum(), 1)),
            "recall": float((pred & true).sum() / max(true.sum(), 1)),
            "held_out_in_range": float(true.mean()),
        }
        base = {"problem": p.name, "target": r.label(p.unit), "n_train": n_train, "seed": seed, "anchor": anchor}
        base |= {"train_in_range": float(r.contains(y).mean()), "fit_s": fit_s, "judge": judge}
        for method, V, invalid in (("cINN", snapped[valid], int((~valid).sum())), ("uniform", uniform, 0)):
            shares = _shares(p, surrogate, r, V, samples)
            drew = len(raw) if method == "cINN" else samples
            out.append(base | {"method": method, "drawn": samples, "generated": drew, "invalid": invalid} | shares)
    return out


def _fmt(values: list[float]) -> tuple[str, str]:
    return f"{np.median(values):.1%}", " ".join(f"{v:.1%}" for v in values)


def render(rows: list[dict[str, Any]]) -> str:
    """The share table and the judge table (markdown)."""
    df = pd.DataFrame(rows)
    keys = ["problem", "target", "n_train"]
    lines = [
        "| problem | target | n train | method | in range, surrogate (median) | per seed "
        "| in range, truth (median) | per seed | invalid (median) | seeds with no draw |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (prob, target, n), part in df.groupby(keys, sort=False):
        for method, m in part.groupby("method", sort=False):
            med, per = _fmt(list(m["surrogate"]))
            known = m["true"].notna().all()
            tmed, tper = _fmt(list(m["true"])) if known else ("—", "—")
            invalid = f"{np.median(m['invalid'] / m['drawn']):.1%}"
            none = int((m["generated"] == 0).sum())
            cells = [prob, target, n, method, med, per, tmed, tper, invalid, none]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        "The surrogate as a judge, on held-out rows (median over seeds): MAE, and precision and recall of "
        "'surrogate mean in range' against the true value",
        "",
        "| problem | target | n train | train rows in range | held-out rows in range | MAE | precision | recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cinn = df[df["method"] == "cINN"]
    for (prob, target, n), part in cinn.groupby(keys, sort=False):
        j = pd.DataFrame(list(part["judge"]))
        lines.append(
            f"| {prob} | {target} | {n} | {np.median(part['train_in_range']):.1%} "
            f"| {np.median(j['held_out_in_range']):.1%} | {np.median(j['mae']):.3f} "
            f"| {np.median(j['precision']):.1%} | {np.median(j['recall']):.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.generator_share", description=__doc__.split("\n")[0])
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--samples", type=int, default=2000, help="cINN samples and uniform designs per target")
    p.add_argument("--recipe-train", nargs="+", type=int, default=[200, 500], help="training recipes")
    p.add_argument("--mos2-train", nargs="+", type=int, default=[3000], help="training rows of the MoS2 data")
    p.add_argument("--quick", action="store_true", help="tiny training budgets: a smoke run, not figures")
    p.add_argument("--json", help="write every row here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    m = QUICK if args.quick else ModelSpec()
    rows: list[dict[str, Any]] = []
    for name in args.problems:
        prob = problem(name)
        for n in args.recipe_train if name == "experiment" else args.mos2_train:
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                rows += measure(prob, n, seed, args.samples, m)
                print(f"{name} n={n} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(render(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"settings": vars(args) | {"models": m.model_dump()}, "rows": rows}, fh, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
