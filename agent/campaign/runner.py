"""Start, resume and inspect campaigns: the glue between a config, ``state/`` and `step`.

`open_campaign` rebuilds the `CampaignState` from disk (verifying every committed
iteration's checksums and the ledger's), `run_campaign` steps until a stop rule fires,
and `campaign_status` answers "where does it stand" without touching the oracle.
"""

from __future__ import annotations

import inspect
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from agent.campaign.approval import STOPPED, Gate, read_readmitted
from agent.campaign.config import CampaignConfig
from agent.campaign.constraints import check_oracle_values, unmeasured, unmeasured_message
from agent.campaign.journal import in_flight
from agent.campaign.loop import Context, step
from agent.campaign.monitor import Monitor
from agent.campaign.monitor import current as current_monitor
from agent.campaign.notify import webhook_for
from agent.campaign.refill import is_async
from agent.campaign.state import (
    FAILURE_STOP,
    CampaignState,
    failure_report,
    stop_reason,
)
from agent.campaign.status import campaign_status
from agent.campaign.store import CampaignStore
from agent.campaign.tell import ingest
from agent.campaign.transfer import load_transfer
from agent.core.errors import CampaignStopped, ConfigError, InnloopError
from agent.core.materials import read_observations
from agent.design.sampling import LocalSampler, Sampler
from agent.design.trained import SURROGATE_FILE, TrainedModels
from oracles import make_oracle, oracle_class
from oracles.base import NamesValues, Oracle, OracleError

PAUSED = "paused after"  # the reason of a run that stopped at its own iteration limit

__all__ = [
    "PAUSED",
    "CampaignRun",
    "campaign_status",
    "last_models",
    "make_campaign_oracle",
    "open_campaign",
    "oracle_for",
    "run_campaign",
]


@dataclass
class CampaignRun:
    """What a finished (or paused) run hands back: the state, its store and why it stopped."""

    state: CampaignState
    store: CampaignStore
    reason: str

    @property
    def paused(self) -> bool:
        """This run stopped at its ``max_iterations``; the campaign itself goes on."""
        return self.reason.startswith(PAUSED)


def open_campaign(
    config: CampaignConfig, state_dir: str | Path, source_text: str | None = None
) -> tuple[CampaignStore, CampaignState]:
    """Create ``state_dir/<name>`` or re-open it (refusing a folder started with another config)."""
    store = CampaignStore(state_dir, config.name)
    if not store.exists():
        text = source_text if source_text is not None else f"# created from a validated config\n# {config.to_dict()}\n"
        store.create(config.to_dict(), config.fingerprint(), text)
    else:
        store.check_fingerprint(config.fingerprint())
    last = store.last_completed()
    history = tuple(store.verify_iteration(i) for i in range(last + 1))
    material = config.design_material()
    prior_X = prior_y = None
    if config.initial.data:
        obs = read_observations(config.initial.data, material)
        prior_X, prior_y = obs.X, obs.y
    state = CampaignState(
        config=config,
        space=material.space,
        target_name=material.target,
        iteration=last + 1,
        records=tuple(store.ledger.records()),
        prior_X=prior_X,
        prior_y=prior_y,
        history=history,
        elapsed_s=float(history[-1].get("elapsed_s", 0.0)) if history else 0.0,
        readmitted=tuple(sorted(read_readmitted(store.root).items())),
    )
    return store, state


def oracle_for(
    config: CampaignConfig, workdir: Path | None = None, *, override: bool = False, cls: type | None = None
) -> Oracle:
    """The configured oracle, measuring the campaign's material. An oracle that keeps jobs
    on disk keeps them in ``workdir`` unless its settings name a folder (always, with
    ``override``: a report's confirmations never share the campaign's job folder). ``cls``:
    a subclass of the configured oracle's class to build instead (a flow's own variant)."""
    settings = dict(config.oracle.settings)
    base = oracle_class(config.oracle.name)
    if cls is not None and not issubclass(cls, base):
        raise TypeError(f"{cls.__name__} is not a {base.__name__}")
    params = inspect.signature(cls or base).parameters
    if workdir is not None and "workdir" in params and (override or "workdir" not in settings):
        settings["workdir"] = str(workdir)
    if "material" in params and "material" not in settings:  # DFT builds the campaign's material
        # a registered material travels by name (job processes look it up); a [space] as itself
        settings["material"] = config.material if config.space is None else config.design_material()
    if cls is not None:
        variant: Any = cls  # the configured class's own subclass: its settings are the same
        built: Oracle = variant(**settings)
        return built
    return make_oracle(config.oracle.name, **settings)


def make_campaign_oracle(config: CampaignConfig, store: CampaignStore, cls: type | None = None) -> Oracle:
    """The campaign's oracle (`oracle_for`), its jobs inside the campaign folder."""
    return oracle_for(config, store.root / "oracle", cls=cls)


def run_campaign(
    config: CampaignConfig,
    state_dir: str | Path,
    *,
    source_text: str | None = None,
    oracle: Oracle | None = None,
    sampler: Sampler | None = None,
    monitor: Monitor | None = None,
    log: Callable[[str], None] = lambda _m: None,
    run_stage: Callable[[str, Callable[[], Any]], Any] | None = None,
    on_iteration: Callable[[CampaignState, CampaignStore], None] | None = None,
    max_iterations: int | None = None,
    gate: Gate | None = None,
    link: str | None = None,
) -> CampaignRun:
    """Step the campaign until it has its hits or a budget runs out; safe to call again.

    ``max_iterations`` ends this run (not the campaign) after that many iterations: the
    same call later carries on where it stopped. Progress goes to ``monitor`` (default:
    the one installed by `agent.campaign.monitor.watching`); ``log`` hears every message as well as
    one line per iteration.

    Raises `CampaignStopped` when the latest results of an oracle that does not declare its
    values lack a ``[[constraints]]`` value (`agent.campaign.constraints.unmeasured`): no hit
    could come. Everything is kept; run again once the cause is fixed.

    ``gate`` asks a person to approve each batch (``[approval] required``; default: wait for
    ``innloop approve``); ``link`` is where the run is watched (a Prefect run's page), for the
    question and for ``[notify]``'s messages: approval waiting, finished, stopped.

    Torch runs with ``$INNLOOP_TORCH_THREADS`` threads (default 1): the models are small,
    and on a shared or small machine more threads than free cores slow training by
    orders of magnitude (spinning OpenMP workers), not the other way round.
    """
    torch.set_num_threads(max(1, int(os.environ.get("INNLOOP_TORCH_THREADS", "1"))))
    fresh_dir = not Path(state_dir).exists()
    lock = CampaignStore(state_dir, config.name)
    fresh = not lock.exists()
    with lock.running():
        try:
            return _run_locked(
                config,
                state_dir,
                fresh,
                source_text,
                oracle,
                sampler,
                monitor or current_monitor(),
                log,
                run_stage,
                on_iteration,
                max_iterations,
                gate,
                link,
            )
        finally:
            if fresh and not lock.exists():  # it never began: leave no empty campaign folder behind
                shutil.rmtree(lock.root, ignore_errors=True)
                if fresh_dir:
                    shutil.rmtree(state_dir, ignore_errors=True)


def _run_locked(
    config: CampaignConfig,
    state_dir: str | Path,
    fresh: bool,
    source_text: str | None,
    oracle: Oracle | None,
    sampler: Sampler | None,
    monitor: Monitor,
    log: Callable[[str], None],
    run_stage: Callable[[str, Callable[[], Any]], Any] | None,
    on_iteration: Callable[[CampaignState, CampaignStore], None] | None,
    max_iterations: int | None,
    gate: Gate | None,
    link: str | None,
) -> CampaignRun:
    """`run_campaign` with the campaign's run lock held."""
    store, state = open_campaign(config, state_dir, source_text)
    try:
        oracle = oracle or make_campaign_oracle(config, store)
    except Exception as exc:
        if fresh:  # a bad oracle setting: leave no half-made campaign that a fixed config cannot reopen
            (store.root / "config.json").unlink(missing_ok=True)  # `run_campaign` then removes the folder
        if isinstance(exc, InnloopError):
            raise ConfigError(f"invalid configuration {config.source}: oracle.settings: {exc}") from None
        raise
    try:  # an oracle that names its values and lacks a limited one: refused before anything is submitted
        check_oracle_values(config.constraints, oracle)
    except ConfigError as exc:
        if fresh:
            (store.root / "config.json").unlink(missing_ok=True)
        raise ConfigError(f"invalid configuration {config.source}: {exc}") from None
    started = time.time()
    wall = config.budget.wall_time_s

    def say(msg: str) -> None:
        log(msg)
        monitor.message(msg)

    notify = webhook_for(config.notify, store.root, config.name, link, say)
    ctx = Context(
        oracle=oracle,
        store=store,
        sampler=sampler or LocalSampler(),
        run_started=started,
        deadline=None if wall is None else started + max(0.0, wall - state.elapsed_s),
        monitor=monitor,
        log=say,
        gate=gate,
        link=link,
        notify=notify,
    )
    if run_stage is not None:
        ctx = replace(ctx, run_stage=run_stage)
    if config.transfer is not None:  # a ledger source pinned on the first run; its model trained once, then cached
        ctx = replace(ctx, transfer=load_transfer(config, state_dir))
    models, _ = last_models(store, state)
    monitor.started(state)
    if state.iteration:
        say(f"resuming {config.name} after iteration {state.iteration - 1}: {state.calls} results in the ledger")
    try:
        first, known, warned = state.iteration, {r.seq for r in state.records}, False
        declared = isinstance(oracle, NamesValues)  # checked above, before anything was sent
        while (reason := stop_reason(state := _told(state, store, say), run_started=started)) is None:
            # a constrained value missing from the latest results: an oracle that does not declare its values
            # may not measure it (stop: no hit could ever come); one that does has a setup problem (say so)
            if missing := unmeasured(state.records, config.constraints, known=known):
                if not declared:
                    raise CampaignStopped(unmeasured_message(missing, config.oracle.name, state.records))
                if not warned:
                    say(unmeasured_message(missing, config.oracle.name, state.records, declared=True))
                    warned = True
            if max_iterations is not None and state.iteration - first >= max_iterations:
                reason = f"{PAUSED} {max_iterations} iteration(s) of this run (--iterations); run again to go on"
                break
            try:
                state, models = step(state, ctx, models)
            except TimeoutError as exc:  # the wall-time budget ran out with jobs at the oracle
                reason = f"wall-time budget reached; {exc}"
                break
            m = state.history[-1]
            log(f"iteration {m['iteration']}: {m['oracle_calls']} oracle calls, hits {m['hits']}")
            monitor.iteration(state)
            if on_iteration is not None:
                on_iteration(state, store)
        if out := _to_drain(state, store, reason):  # async mode: the jobs still out are paid for; collect them
            say(f"{reason}; collecting the {out} jobs still at the oracle")
            try:
                state, models = step(state, ctx, models, drain=True)
            except TimeoutError as exc:
                reason = f"wall-time budget reached; {exc}"
            else:
                monitor.iteration(state)
                if on_iteration is not None:
                    on_iteration(state, store)
    except (OracleError, CampaignStopped) as exc:  # unreachable, refusing, or no hit could come: tell someone
        notify("stopped", f"stopped-{store.last_completed() + 1}-{type(exc).__name__}", f"{type(exc).__name__}: {exc}")
        raise
    if not reason.startswith(PAUSED):
        over = "stopped" if reason.startswith((FAILURE_STOP, STOPPED)) else "finished"
        notify(over, f"{over}-{state.iteration}", reason)  # once per end: a rerun that adds nothing tells nothing
    return CampaignRun(replace(state, stopped=reason), store, reason)


def _told(state: CampaignState, store: CampaignStore, say: Callable[[str], None]) -> CampaignState:
    """``state`` with what people told it while this run held the lock: measurements from outside
    (`agent.campaign.tell`) and dropped designs let back in (`agent.campaign.approval.readmit`)."""
    state = replace(state, readmitted=tuple(sorted(read_readmitted(store.root).items())))
    if not (new := ingest(store, state.iteration)):
        return state
    say(f"{len(new)} external measurements recorded (innloop tell); they count for the models and hits")
    return state.with_records(new)


def _to_drain(state: CampaignState, store: CampaignStore, reason: str) -> int:
    """The jobs to collect (0: none) of an asynchronous campaign that is over (its hits, or
    its call or iteration budget: `stop_reason` without the clock). Not after a pause, the
    wall time, or a failure-rate stop."""
    if not is_async(state) or reason.startswith(PAUSED) or failure_report(state) is not None:
        return 0
    return len(in_flight(store)[0]) if stop_reason(state) is not None else 0


def last_models(store: CampaignStore, state: CampaignState) -> tuple[TrainedModels | None, int | None]:
    """The newest committed iteration's models (verified against its manifest) and its number."""
    for i in range(state.iteration - 1, -1, -1):
        folder = store.iteration_dir(i)
        if (folder / SURROGATE_FILE).exists():
            store.iteration_file(i, SURROGATE_FILE)  # verified against the manifest first
            return TrainedModels.load(folder, state.config.models.generator), i
    return None, None
