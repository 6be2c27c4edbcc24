"""One iteration of a campaign, top to bottom: ``step(state, ctx, models) -> (state, models)``.

1. `retrain`    ┐
2. `sample`     │ planning (`agent.campaign.plan`): pure, state and models in, models and
3. `refine`     │ batch out; here the models are saved after `retrain` and the batch
4. `choose`     ┘ into ``batch.csv`` after `choose` (the families it spread hits over
                   into ``families.json`` just before);
   `approve`    with ``[approval] required``: a person's decision on the batch, written to
                ``approval.json`` before anything is submitted (`agent.campaign.approval`);
5. `measure`    submit and collect (`agent.campaign.collect`: ledger first, retries, timeouts);
6. `update`     observations, hits per target, metrics;
7. `checkpoint` candidates and metrics into ``iterations/NNNN/``, then commit it.

This module holds the effects around the pure planning stages: the disk, the oracle and
the clock. Resume is decided in one place, `Leftovers`: what a killed run left of this
iteration (its jobs in flight, its saved models, its ``batch.csv``) is read once at the
start, so a resumed run re-attaches to its batch instead of choosing another.

Each stage goes through ``ctx.run_stage`` under its name, so a Prefect flow runs each as a
task and the kill tests (`agent.testing.crash`) stop a run between or inside them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agent.campaign import approval, plan, refill
from agent.campaign.batch import Batch
from agent.campaign.collect import Job, collect
from agent.campaign.journal import in_flight
from agent.campaign.ledger import LedgerRecord
from agent.campaign.monitor import Monitor
from agent.campaign.notify import Notify, quiet
from agent.campaign.plan import PlanInputs
from agent.campaign.state import CampaignState, hit_designs
from agent.campaign.store import CampaignStore
from agent.core.atomic import write_text
from agent.core.errors import InnloopError, StateError
from agent.core.materials import read_designs
from agent.design.coverage import Families, families_from_json, families_to_json
from agent.design.funnel import Candidates
from agent.design.metrics import mean_nn_distance
from agent.design.sampling import LocalSampler, Sampler
from agent.design.trained import TrainedModels
from agent.models.transfer import TransferSource
from oracles.base import MeasuresPool, Oracle, design_digest

__all__ = ["Context", "Leftovers", "gather", "measure", "step", "update"]

StageRunner = Callable[[str, Callable[[], Any]], Any]


@dataclass(frozen=True)
class Context:
    """The services a step uses: nothing in here is part of the campaign's state."""

    oracle: Oracle
    store: CampaignStore
    sampler: Sampler = field(default_factory=LocalSampler)
    run_started: float = field(default_factory=time.time)
    deadline: float | None = None
    monitor: Monitor = field(default_factory=Monitor)  # the one voice on the console: no bars here
    log: Callable[[str], None] = lambda _m: None
    # runs one named stage; a Prefect flow swaps in one that makes each stage a task
    run_stage: StageRunner = lambda _name, fn: fn()
    transfer: TransferSource | None = None  # [transfer]'s source, loaded once per run (agent.campaign.transfer)
    gate: approval.Gate | None = None  # who is asked to approve a batch; None: `innloop approve` (a FileGate)
    link: str | None = None  # where this run is watched (a Prefect run's page), for questions and notifications
    notify: Notify = quiet  # [notify]: tells people an approval waits (`agent.campaign.notify`)


@dataclass(frozen=True)
class Leftovers:
    """What a killed run left of the iteration being run: jobs in flight, models, batch.

    The one place resume is decided. A batch on disk is measured as it is (never chosen
    again, and its models are the ones saved with it); models on disk without a batch
    skip training; jobs in the in-flight file are re-attached, never submitted again
    (``since``: when a submit began whose outcome is unknown, ``None`` when none did).
    """

    in_flight: tuple[Job, ...] = ()
    since: float | None = None
    models: TrainedModels | None = None
    batch: Batch | None = None
    families: tuple[Families | None, ...] = ()  # those the batch's hits were spread over

    @classmethod
    def read(cls, store: CampaignStore, state: CampaignState) -> Leftovers:
        jobs, since = in_flight(store)  # first: a damaged file stops the run before it writes anything
        folder = store.iteration_dir(state.iteration)
        batch = Batch.read(folder / "batch.csv", state) if (folder / "batch.csv").exists() else None
        families = read_families(folder / FAMILIES_FILE) if batch is not None else ()
        return cls(tuple(jobs), since, TrainedModels.load(folder, state.config.models.generator), batch, families)

    def pending(self, state: CampaignState) -> np.ndarray:
        """Unit-box designs ``(k, d)`` of the jobs still at the oracle."""
        return state.space.to_unit(state.space.from_rows([j.design for j in self.in_flight], source="jobs in flight"))

    def jobs(self, state: CampaignState, batch: Batch) -> list[Job]:
        """The jobs in flight (to re-attach) plus the batch's designs that have no result yet."""
        taken = {design_digest(j.design) for j in self.in_flight}
        done = {
            design_digest(r.result.handle.design)
            for r in state.records
            if r.iteration == state.iteration and not r.external
        }
        return [*self.in_flight, *(j for j in jobs_for(state, batch) if design_digest(j.design) not in taken | done)]


def gather(
    state: CampaignState, ctx: Context, previous: TrainedModels | None = None, left: Leftovers | None = None
) -> PlanInputs:
    """What planning needs from the world: the oracle's pool, the designs in flight, the
    initial designs file (first batch only), the sampler and the models to start from."""
    left = left or Leftovers()
    space, oracle = state.space, ctx.oracle
    pool = None
    if isinstance(oracle, MeasuresPool):
        pool = space.to_unit(space.from_frame(oracle.pool(), source=f"{oracle.name} pool"))
    path = state.config.initial.designs
    designs = read_designs(path, state.config.design_material()) if path and plan.first_batch(state) else None
    return PlanInputs(previous, left.models, pool, left.pending(state), designs, ctx.sampler, ctx.transfer)


# -- the step ---------------------------------------------------------------------------------
def step(
    state: CampaignState, ctx: Context, models: TrainedModels | None, *, drain: bool = False
) -> tuple[CampaignState, TrainedModels | None]:
    """Run one iteration from the last one's ``models``; return the new state and this one's models.

    A half-done iteration (`Leftovers`) carries on with its batch instead of choosing anew.
    In async mode (`agent.campaign.refill`) the iteration is one refill: it chooses designs
    for the free slots only and learns once its share of results is in; ``drain``: choose
    nothing and collect every job in flight (the campaign is over).
    """
    seconds: dict[str, float] = {}
    stage = _timed(state, ctx, seconds)
    left = Leftovers.read(ctx.store, state)
    folder = ctx.store.iteration_dir(state.iteration)
    room = refill.slots(state, left.in_flight, drain=drain)
    nothing = np.zeros((0, state.space.unit_dim))
    if left.batch is not None:
        mine, batch = left.models, left.batch
        cands = Candidates(nothing, np.zeros(0, int), {"resumed": 1}, families=left.families)
    elif room == 0:  # every slot taken (or draining): learn nothing new, wait for results
        mine, batch = None, Batch(nothing, np.zeros(0, int), [], *np.zeros((3, 0)))
        cands = Candidates(nothing, np.zeros(0, int), {"slots_full" if not drain else "drain": 1})
        write_csv(folder / "batch.csv", batch.frame(state))
    else:
        given = replace(gather(state, ctx, models, left), slots=room, refit=refill.refit_due(state, models))
        mine = stage("retrain", lambda: plan.retrain(state, given))
        if mine is not None and left.models is None:
            mine.save(folder)
        samples = stage("sample", lambda: plan.sample(state, mine, given))
        found = stage("refine", lambda: plan.refine(state, mine, samples, given))
        batch, cands = stage("choose", lambda: plan.choose(state, mine, found, given))
        write_families(folder / FAMILIES_FILE, cands.families)  # first: a batch on disk has its families
        write_csv(folder / "batch.csv", batch.frame(state))
    jobs = left.jobs(state, batch)
    decided = None
    if state.config.approval.required and len(batch.U):
        decided = stage("approve", lambda: ask_approval(state, ctx, batch, folder, sent=_sent(state, left)))
        jobs = [*left.in_flight, *_kept(state, jobs[len(left.in_flight) :], batch, decided[0])]
    wait = refill.enough(state, drain=drain)
    new = [] if not jobs else stage("measure", lambda: measure(state, jobs, ctx, left.since, enough=wait))
    earlier = refill.forecasts(ctx.store, state, [r for r in state.records if r.iteration == state.iteration] + new)
    nxt = stage(
        "update",
        lambda: update(state, batch, new, seconds, run_started=ctx.run_started, now=time.time(), earlier=earlier),
    )
    if decided is not None:  # the report and `status` show who decided what
        nxt = replace(nxt, history=(*nxt.history[:-1], nxt.history[-1] | {"approval": approval.summary(*decided)}))
    done = stage("checkpoint", lambda: checkpoint(nxt, mine, cands, ctx.store))
    return done, mine or models


def ask_approval(
    state: CampaignState, ctx: Context, batch: Batch, folder: Path, *, sent: bool = False
) -> tuple[approval.Decision, approval.Proposal]:
    """The decision on ``batch`` (`agent.campaign.approval.ask`): on disk, or asked of a person.
    ``sent``: part of the batch reached the oracle before approval was required (the setting
    may change between runs): nothing is asked, and the record says so."""
    spec = state.config.approval
    if sent and approval.read_decision(folder) is None:
        why = "part of the batch had reached the oracle before approval was required"
        held = approval.write_decision(folder, approval.Decision("approve", (), why, "innloop"))
        return held, batch.proposal(state, time.time(), ctx.link)
    gate = ctx.gate or approval.FileGate(folder)

    def told(p: approval.Proposal) -> None:
        ctx.log(f"iteration {p.iteration}: {len(p.rows)} designs wait for approval (innloop approve {p.campaign})")
        ctx.notify("approval", f"approval-{p.iteration}", f"{len(p.rows)} designs of iteration {p.iteration} wait")

    return approval.ask(
        folder, lambda at: batch.proposal(state, at, ctx.link), gate, told, spec.timeout_s, spec.on_timeout
    )


def _sent(state: CampaignState, left: Leftovers) -> bool:
    """Whether this iteration's batch has reached the oracle, in part: a job of it in the journal
    (an async job of an earlier refill does not count), or a result of the oracle recorded."""
    mine = [j for j in left.in_flight if refill.chosen_in(j.tag) in (None, state.iteration)]
    recorded = any(r.iteration == state.iteration and not r.external for r in state.records)
    return bool(mine) or recorded


def _kept(state: CampaignState, fresh: list[Job], batch: Batch, decision: approval.Decision) -> list[Job]:
    """The batch's designs never sent (``fresh``) that the decision lets go: none after a stop,
    all but the dropped ones (numbered from 1) after an approval. Jobs in the journal are
    another matter: they may be at the oracle, and are always collected."""
    if decision.action == "stop":
        return []
    rows = state.space.to_rows(batch.physical(state))
    gone = {design_digest(rows[i - 1]) for i in decision.drop}
    return [j for j in fresh if design_digest(j.design) not in gone]


def _timed(state: CampaignState, ctx: Context, seconds: dict[str, float]) -> StageRunner:
    """Run a stage through ``ctx.run_stage``, tell the monitor, and record its seconds."""

    def run(name: str, fn: Callable[[], Any]) -> Any:
        ctx.monitor.stage(state, name)
        t0 = time.perf_counter()
        out = ctx.run_stage(name, fn)
        seconds[name] = time.perf_counter() - t0
        return out

    return run


# -- 5. measure -------------------------------------------------------------------------------
def jobs_for(state: CampaignState, batch: Batch) -> list[Job]:
    rows = batch.physical(state)
    tags = [refill.tag(state, f"{'seed' if t < 0 else f't{t}'}/{r}") for t, r in zip(batch.target, batch.reason)]
    return [Job(row, tag) for row, tag in zip(state.space.to_rows(rows), tags)]


def measure(
    state: CampaignState, jobs: list[Job], ctx: Context, since: float | None = None, *, enough: int | None = None
) -> list[LedgerRecord]:
    """Submit what has no handle, re-attach what has, and return the new ledger records.

    ``enough``: return once that many results are in, the other jobs left in flight (async
    mode); ``None``: every job's. ``[loop] max_in_flight`` caps the jobs at the oracle.
    """
    new, left = collect(
        ctx.oracle,
        ctx.store,
        jobs,
        state.iteration,
        state.config.retry,
        deadline=ctx.deadline,
        since=since,
        max_in_flight=state.config.loop.in_flight_cap,
        enough=enough,
        progress=ctx.monitor.jobs,
        log=ctx.log,
    )
    if left and (enough is None or (ctx.deadline is not None and time.time() >= ctx.deadline)):
        raise TimeoutError(f"{len(left)} jobs still at the oracle when the wall-time budget ran out")
    return new


# -- 6. update --------------------------------------------------------------------------------
def update(
    state: CampaignState,
    batch: Batch,
    new: list[LedgerRecord],
    seconds: dict[str, float],
    *,
    run_started: float,
    now: float,
    earlier: Mapping[str, tuple[float, float]] | None = None,
) -> CampaignState:
    """Fold the new results in and compute this iteration's metrics (``now``: the clock, read by the caller).

    The forecast error is over this iteration's results of ``batch``'s designs and of
    designs that ``earlier`` iterations chose (digest -> forecast and σ then; async mode).
    """
    before = [len(h) for h in hit_designs(state)]
    nxt = state.with_records(new)
    after = [len(h) for h in hit_designs(nxt)]
    name = state.target_name
    mine = [r for r in nxt.records if r.iteration == state.iteration]  # a resumed run's too
    said = dict(earlier or {})
    for row, mu, sd in zip(state.space.to_rows(batch.physical(state)), batch.pred, batch.std):
        said[design_digest(row)] = (float(mu), float(sd))
    err, inside = [], []
    for rec in mine:
        res = rec.result
        mu, sd = said.get(design_digest(res.handle.design), (np.nan, np.nan))
        if res.ok and res.values and np.isfinite(mu):
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
        "targets": [t.value if t.value is not None else t.range.label() for t in state.config.targets],
        "batch_mae": float(np.mean(err)) if err else None,
        "batch_coverage_2sigma": float(np.mean(inside)) if inside else None,
        "failures": failures,
        "seconds": seconds,  # the step's own dict: the stages after this one add theirs
        "elapsed_s": state.elapsed_s + (now - run_started),
        "time": now,
    }
    return replace(nxt, history=(*nxt.history, metrics))


# -- 7. checkpoint ----------------------------------------------------------------------------
def checkpoint(
    state: CampaignState, models: TrainedModels | None, cands: Candidates, store: CampaignStore
) -> CampaignState:
    """Commit the iteration folder (manifest, then pointer) and advance the iteration count."""
    folder = store.iteration_dir(state.iteration)
    if len(cands.U):
        df = state.space.to_frame(state.space.from_unit(cands.U))
        df["source"] = cands.source
        write_csv(folder / "candidates.csv", df, float_format="%.6g")
    metrics = dict(state.history[-1]) | {"candidates": cands.counts, "fit": models.fit if models else {}}
    if cands.families:  # where the models believed each target's hits lie: `state.families_covered`
        metrics["families"] = families_to_json(cands.families)
    if models is not None:
        metrics["diversity"] = mean_nn_distance(cands.U[:2000]) if len(cands.U) > 1 else None
    store.commit_iteration(state.iteration, metrics)
    return replace(state, iteration=state.iteration + 1, history=(*state.history[:-1], metrics))


FAMILIES_FILE = "families.json"


def write_families(path: Path, families: tuple[Families | None, ...]) -> None:
    """The families a batch spread its hits over, per target (``null``: none), atomically."""
    write_text(path, json.dumps(families_to_json(families)))


def read_families(path: Path) -> tuple[Families | None, ...]:
    """`write_families`'s file read back; none when a run older than families wrote the batch."""
    if not path.exists():
        return ()
    try:
        data = json.loads(path.read_text())
        return families_from_json(data)
    except (ValueError, TypeError, KeyError, InnloopError) as e:
        raise StateError(f"{path}: damaged families file ({e}); delete it to resume without them") from e


def write_csv(path: Path, df: pd.DataFrame, float_format: str = "%.17g") -> None:
    """Atomic CSV (full precision by default: batch designs must read back bit for bit)."""
    write_text(path, df.to_csv(index=False, float_format=float_format))
