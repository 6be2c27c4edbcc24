"""One iteration of a campaign, top to bottom: ``step(state, ctx) -> state``.

1. `retrain`    the surrogate ensemble and the generator on every observation (warm start);
2. `sample`     generator candidates for each target (through the context's `Sampler`);
3. `refine`     localize them on the surrogate and keep the valid ones (or take the
                oracle's pool, when the oracle can only measure listed designs);
4. `choose`     the batch: BoTorch window probability + uncertainty, batch-aware;
5. `measure`    submit and collect (`agent.campaign.collect`: ledger first, retries, timeouts);
6. `update`     observations, hits per target, metrics;
7. `checkpoint` models, candidates, batch and metrics into ``iterations/NNNN/``.

Each stage is a plain function so a Prefect flow can run them as tasks one by one.
Stage outputs are written into the (uncommitted) iteration folder as they finish, so a
run killed inside an iteration re-attaches to its batch instead of choosing another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from botorch.models.model import Model

from agent.campaign.batch import Batch, Candidates
from agent.campaign.collect import Job, collect
from agent.campaign.ledger import LedgerRecord
from agent.campaign.monitor import Monitor
from agent.campaign.state import CampaignState, hit_designs, measured_unit, missing_hits, nearest_distance, observed
from agent.campaign.store import CampaignStore
from agent.core.atomic import write_text
from agent.core.materials import get_material
from agent.design.acquisition import SelectionConfig, choose_batch, log_window_probability, posterior_std
from agent.design.localize import LocalizeConfig, localize
from agent.design.metrics import mean_nn_distance
from agent.design.sampling import LocalSampler, Sampler
from agent.models.gp import fit_gp
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from generators import Generator, load_generator, make_generator
from generators.base import TrainConfig
from oracles.base import MeasuresPool, Oracle, design_digest

__all__ = ["Batch", "Candidates", "Context", "Models", "step"]

MIN_TRAIN = 8  # below this many completed observations the batch is random


@dataclass
class Context:
    """The services a step uses: nothing in here is part of the campaign's state."""

    oracle: Oracle
    store: CampaignStore
    sampler: Sampler = field(default_factory=LocalSampler)
    run_started: float = field(default_factory=time.time)
    deadline: float | None = None
    monitor: Monitor = field(default_factory=Monitor)  # the one voice on the console: no bars here
    log: Callable[[str], None] = lambda _m: None
    models: Models | None = None  # the last iteration's models, for warm starts
    # runs one named stage; a Prefect flow swaps in one that makes each stage a task
    run_stage: Callable[[str, Callable[[], Any]], Any] = lambda _name, fn: fn()


@dataclass
class Models:
    """The deep ensemble (localization), the generator, and the acquisition's model."""

    surrogate: SurrogateEnsemble
    generator: Generator | None
    fit: dict[str, Any] = field(default_factory=dict)
    acquisition: Model | None = None  # None: the acquisition scores on the surrogate

    @property
    def scorer(self) -> Model:
        return self.acquisition if self.acquisition is not None else self.surrogate


def _rng(state: CampaignState, stage: int) -> np.random.Generator:
    return np.random.default_rng([state.config.seed, state.iteration, stage])


# -- 1. retrain ------------------------------------------------------------------------------
def retrain(state: CampaignState, ctx: Context) -> Models | None:
    """Fit (warm) the surrogate and the generator on every completed observation."""
    U, y = observed(state)
    if len(y) < MIN_TRAIN:
        return None
    m = state.config.models
    t0 = time.perf_counter()
    previous = ctx.models
    surrogate = previous.surrogate if previous else None
    if surrogate is None:
        cfg = EnsembleConfig(
            members=m.members, epochs=m.surrogate_epochs, warm_epochs=m.surrogate_warm_epochs, seed=state.config.seed
        )
        surrogate = SurrogateEnsemble(U.shape[1], cfg)
    summary = surrogate.fit(U, y, warm_start=True)
    t1 = time.perf_counter()
    generator = previous.generator if previous else None
    # an oracle that measures listed designs only (a pool) could not measure generated ones
    if not uses_pool(ctx):
        if generator is None:
            generator = make_generator(m.generator, U.shape[1])
        tcfg = TrainConfig(epochs=m.generator_epochs, warm_epochs=m.generator_warm_epochs, seed=state.config.seed)
        generator.fit(U, y, config=tcfg, warm_start=True)  # type: ignore[arg-type]
    fit = {
        "n_train": len(y),
        "surrogate_s": t1 - t0,
        "generator_s": time.perf_counter() - t1,
        "sigma_scale": summary.sigma_scale,
        "warm": summary.warm_started,
    }
    return with_acquisition_model(state, Models(surrogate, generator, fit))


def with_acquisition_model(state: CampaignState, models: Models | None) -> Models | None:
    """Fit the acquisition's GP when the config asks for one (deterministic for given data)."""
    m = state.config.models
    if models is None or m.acquisition != "gp" or models.acquisition is not None:
        return models
    U, y = observed(state)
    t0 = time.perf_counter()
    models.acquisition = fit_gp(
        U,
        y,
        symmetries=get_material(state.config.material).symmetries,
        targets=[t.value for t in state.config.targets],
        max_points=m.gp_max_points,
        seed=state.config.seed,
    )
    models.fit["gp_s"] = time.perf_counter() - t0
    return models


# -- 2. sample --------------------------------------------------------------------------------
def uses_pool(ctx: Context) -> bool:
    return isinstance(ctx.oracle, MeasuresPool)


def sample(state: CampaignState, models: Models | None, ctx: Context) -> list[np.ndarray]:
    """Generator samples per target (empty for a target outside what the generator learned)."""
    n = state.config.loop.samples_per_target
    if models is None or models.generator is None or uses_pool(ctx):
        return [np.zeros((0, state.space.dim)) for _ in state.config.targets]
    jobs = [(t.value, n, int(_rng(state, 10 + i).integers(2**31))) for i, t in enumerate(state.config.targets)]
    return ctx.sampler.sample(models.generator, jobs)


# -- 3. refine --------------------------------------------------------------------------------
def refine(state: CampaignState, models: Models | None, samples: list[np.ndarray], ctx: Context) -> Candidates:
    """Localize generator samples onto their targets; add uniform ones; or take the pool."""
    space = state.space
    if isinstance(ctx.oracle, MeasuresPool):
        pool = space.to_unit(space.from_frame(ctx.oracle.pool(), source=f"{ctx.oracle.name} pool"))
        return Candidates(pool, np.full(len(pool), -1), {"pool": len(pool)})
    n = state.config.loop.samples_per_target
    parts, sources, counts = [], [], {}
    for i, (t, U) in enumerate(zip(state.config.targets, samples)):
        counts[f"generated_{i}"] = len(U)
        if models is None or len(U) == 0:
            continue
        U = np.clip(U, 0.0, 1.0)
        loc = localize(models.surrogate, U, t.value, LocalizeConfig(max_steps=15))
        parts.append(loc.U)
        sources.append(np.full(len(loc.U), i))
    uniform = _rng(state, 3).random((n, space.dim))
    parts.append(uniform)
    sources.append(np.full(n, -1))
    U = np.vstack(parts)
    source = np.concatenate(sources)
    ok = space.valid_mask(space.from_unit(U))
    counts |= {"candidates": int(ok.sum()), "invalid": int((~ok).sum())}
    return Candidates(U[ok], source[ok], counts)


# -- 4. choose --------------------------------------------------------------------------------
def choose(state: CampaignState, models: Models | None, cands: Candidates, pending: np.ndarray, ctx: Context) -> Batch:
    """The batch: random while there is too little data, else the batch-aware acquisition.

    ``[loop] max_sigma`` (as ``innloop design --max-sigma``): a candidate whose deep-ensemble
    σ is above it never serves a target as a likely hit (``exploit``); it may still be
    explored, and hit slots it leaves go to exploration (`choose_batch`). The count it
    barred goes to ``cands.counts["over_max_sigma"]``. ``None`` (default): no cap.
    """
    cfg = state.config
    room = cfg.budget.oracle_calls - state.calls - len(pending) if cfg.budget.oracle_calls is not None else 10**9
    first = state.iteration == 0 and not state.records
    size = max(0, min(cfg.initial.random if first else cfg.loop.batch_size, room))
    measured = measured_unit(state)
    fresh = nearest_distance(cands.U, np.vstack([measured, pending])) > 1e-9
    U = cands.U[fresh]
    if first and cfg.initial.designs:
        return _given_designs(state, size)
    if models is None:
        pick = _rng(state, 4).choice(len(U), size=min(size, len(U)), replace=False)
        nan = np.full(len(pick), np.nan)
        return Batch(U[pick], np.full(len(pick), -1), ["seed"] * len(pick), nan, nan, nan)
    scorer = models.scorer
    lpf = np.stack([log_window_probability(scorer, U, t.value - t.window, t.value + t.window) for t in cfg.targets])
    sigma = posterior_std(scorer, U)
    sel = SelectionConfig(size, cfg.loop.exploration, cfg.loop.min_distance)
    hit_ok = None
    if cfg.loop.max_sigma is not None:
        hit_ok = models.surrogate.predict(U)[1] <= cfg.loop.max_sigma
        cands.counts["over_max_sigma"] = int((~hit_ok).sum())
    choice = choose_batch(
        lpf, sigma, U, missing_hits(state), sel, pending=pending, hits=hit_designs(state), hit_ok=hit_ok
    )
    mean, std = _predict(scorer, U[choice.index])
    return Batch(U[choice.index], choice.target, choice.reason, mean, std, choice.score)


def _given_designs(state: CampaignState, random: int) -> Batch:
    """The first batch: the designs of ``initial.designs`` plus ``random`` uniform ones."""
    from agent.core.errors import DataError

    path = str(state.config.initial.designs)
    space = state.space
    X = space.from_frame(pd.read_csv(path), source=path)
    bad = ~space.valid_mask(X)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{path}: {int(bad.sum())} designs lie outside the design space, first row {first}")
    U_extra = space.sample_unit(_rng(state, 4), random)
    X = np.vstack([X, space.from_unit(U_extra)])
    nan = np.full(len(X), np.nan)
    return Batch(space.to_unit(X), np.full(len(X), -1), ["seed"] * len(X), nan, nan, nan, X)


def _predict(model: Model, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation ``(n,)`` of any BoTorch model."""
    if len(U) == 0:
        return np.zeros(0), np.zeros(0)
    p = next(iter(model.parameters()), None)
    with torch.no_grad():
        post: Any = model.posterior(torch.as_tensor(U, dtype=p.dtype if p is not None else torch.float64).unsqueeze(-2))
        mean = post.mean.reshape(len(U)).double().numpy()
        std = post.variance.reshape(len(U)).clamp_min(0).sqrt().double().numpy()
    return mean, std


# -- 5. measure -------------------------------------------------------------------------------
def jobs_for(state: CampaignState, batch: Batch) -> list[Job]:
    rows = batch.physical(state)
    tags = [f"{'seed' if t < 0 else f't{t}'}/{r}" for t, r in zip(batch.target, batch.reason)]
    return [Job(dict(zip(state.space.names, map(float, x))), tag) for x, tag in zip(rows, tags)]


def measure(state: CampaignState, jobs: list[Job], ctx: Context, since: float | None = None) -> list[LedgerRecord]:
    """Submit what has no handle, re-attach what has, and return the new ledger records."""
    new, left = collect(
        ctx.oracle,
        ctx.store,
        jobs,
        state.iteration,
        state.config.retry,
        deadline=ctx.deadline,
        since=since,
        progress=ctx.monitor.jobs,
        log=ctx.log,
    )
    if left:
        raise TimeoutError(f"{len(left)} jobs still at the oracle when the wall-time budget ran out")
    return new


# -- 6. update --------------------------------------------------------------------------------
def update(
    state: CampaignState, batch: Batch, new: list[LedgerRecord], seconds: dict[str, float], ctx: Context
) -> CampaignState:
    """Fold the new results in and compute this iteration's metrics."""
    before = [len(h) for h in hit_designs(state)]
    nxt = state.with_records(new)
    after = [len(h) for h in hit_designs(nxt)]
    name = state.target_name
    mine = [r for r in nxt.records if r.iteration == state.iteration]  # a resumed run's too
    by_digest = {design_digest(r.result.handle.design): r.result for r in mine}
    err, inside = [], []
    for x, mu, sd in zip(batch.physical(state), batch.pred, batch.std):
        res = by_digest.get(design_digest(dict(zip(state.space.names, map(float, x)))))
        if res is not None and res.ok and res.values and np.isfinite(mu):
            err.append(abs(res.values[name] - mu))
            inside.append(abs(res.values[name] - mu) <= 2 * sd)
    failures: dict[str, int] = {}
    for r in mine:
        if not r.result.ok:
            failures[r.result.status.value] = failures.get(r.result.status.value, 0) + 1
    metrics = {
        "iteration": state.iteration,
        "oracle_calls": nxt.calls,
        "new_results": len(mine),
        "completed": sum(r.result.ok for r in nxt.records),
        "hits": after,
        "new_hits": [a - b for a, b in zip(after, before)],
        "targets": [t.value for t in state.config.targets],
        "batch_mae": float(np.mean(err)) if err else None,
        "batch_coverage_2sigma": float(np.mean(inside)) if inside else None,
        "failures": failures,
        "seconds": seconds,
        "elapsed_s": state.elapsed_s + (time.time() - ctx.run_started),
        "time": time.time(),
    }
    return replace(nxt, history=(*nxt.history, metrics))


# -- 7. checkpoint ----------------------------------------------------------------------------
def checkpoint(state: CampaignState, models: Models | None, cands: Candidates, ctx: Context) -> CampaignState:
    """Commit the iteration folder (manifest, then pointer) and advance the iteration count."""
    folder = ctx.store.iteration_dir(state.iteration)
    if len(cands.U):
        df = state.space.to_frame(state.space.from_unit(cands.U))
        df["source"] = cands.source
        write_csv(folder / "candidates.csv", df, float_format="%.6g")
    metrics = dict(state.history[-1]) | {"candidates": cands.counts, "fit": models.fit if models else {}}
    if models is not None:
        metrics["diversity"] = mean_nn_distance(cands.U[:2000]) if len(cands.U) > 1 else None
    ctx.store.commit_iteration(state.iteration, metrics)
    ctx.models = models or ctx.models
    return replace(state, iteration=state.iteration + 1, history=(*state.history[:-1], metrics))


def write_csv(path: Path, df: pd.DataFrame, float_format: str = "%.17g") -> None:
    """Atomic CSV (full precision by default: batch designs must read back bit for bit)."""
    write_text(path, df.to_csv(index=False, float_format=float_format))


def save_models(models: Models | None, folder: Path) -> None:
    if models is not None:
        models.surrogate.save(folder / "surrogate.pt")
        if models.generator is not None:
            models.generator.save(folder / "generator.pt")


def load_models(folder: Path, kind: str) -> Models | None:
    """Models saved in an iteration folder (``weights_only`` loaders), or ``None``."""
    if not (folder / "surrogate.pt").exists():
        return None
    gen = load_generator(folder / "generator.pt", kind=kind) if (folder / "generator.pt").exists() else None
    return Models(SurrogateEnsemble.load(folder / "surrogate.pt"), gen)


# -- the step ---------------------------------------------------------------------------------
def step(state: CampaignState, ctx: Context) -> CampaignState:
    """Run one iteration; resumes a half-done one (its batch) instead of choosing anew."""
    seconds: dict[str, float] = {}
    inflight = ctx.store.read_inflight()  # first: a damaged one stops the run before it writes anything
    folder = ctx.store.iteration_dir(state.iteration)

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        ctx.monitor.stage(state, name)
        t0 = time.perf_counter()
        out = ctx.run_stage(name, fn)
        seconds[name] = time.perf_counter() - t0
        return out

    # a killed run left this iteration's models and batch behind: carry on with them
    models = load_models(folder, state.config.models.generator)
    if models is not None and not (folder / "batch.csv").exists():
        models = timed("retrain", lambda: with_acquisition_model(state, models))
    if models is None:
        models = timed("retrain", lambda: retrain(state, ctx))
        save_models(models, folder)
    if (folder / "batch.csv").exists():
        batch = Batch.read(folder / "batch.csv", state)
        cands = Candidates(np.zeros((0, state.space.dim)), np.zeros(0, int), {"resumed": 1})
    else:
        samples = timed("sample", lambda: sample(state, models, ctx))
        cands = timed("refine", lambda: refine(state, models, samples, ctx))
        pending = _pending_designs(state, inflight)
        batch = timed("choose", lambda: choose(state, models, cands, pending, ctx))
        write_csv(folder / "batch.csv", batch.frame(state))
    jobs, since = _jobs_to_run(state, batch, inflight)
    new = timed("measure", lambda: measure(state, jobs, ctx, since))
    nxt = timed("update", lambda: update(state, batch, new, seconds, ctx))
    return timed("checkpoint", lambda: checkpoint(nxt, models, cands, ctx))


def _pending_designs(state: CampaignState, inflight: dict[str, Any] | None) -> np.ndarray:
    if not inflight:
        return np.zeros((0, state.space.dim))
    rows = [[j["design"][n] for n in state.space.names] for j in inflight.get("jobs", [])]
    return state.space.to_unit(np.asarray(rows, dtype=float).reshape(-1, state.space.dim))


def _jobs_to_run(state: CampaignState, batch: Batch, inflight: dict[str, Any] | None) -> tuple[list[Job], float | None]:
    """In-flight jobs to re-attach plus the batch's designs that have no result yet."""
    jobs = [Job.from_json(j) for j in inflight.get("jobs", [])] if inflight else []
    since = float(inflight["time"]) if inflight and inflight.get("phase") == "submitting" else None
    taken = {design_digest(j.design) for j in jobs}
    done = {design_digest(r.result.handle.design) for r in state.records if r.iteration == state.iteration}
    jobs += [j for j in jobs_for(state, batch) if design_digest(j.design) not in taken | done]
    return jobs, since
