"""The asynchronous loop's rules: how many designs a refill chooses, and when it has learned enough.

Why a mode of its own. In batch mode (`agent.campaign.loop.step`) an iteration measures
its whole batch before it learns, so on a cluster one straggling DFT job (run times vary
several-fold; a failed job is re-sent after a backoff) holds every free slot idle. With
``[loop] mode = "async"`` the oracle stays busy: up to ``max_in_flight`` jobs are at the
oracle, and an iteration is one *refill*. It

1. reads the jobs in flight, whichever iteration chose them (``inflight.json``);
2. chooses as many designs as there are free slots (``max_in_flight`` minus the jobs in
   flight, a job waiting out a re-send's backoff included), every design in flight passed
   to the acquisition as pending (never a near-duplicate of one, and the batch rules
   count them as already placed);
3. submits them and drives the oracle until ``refill`` results have come back for good;
4. learns from those and is checkpointed, the other jobs staying in flight for the next
   refill. The GP models learn from every result; the networks are refitted (warm-started,
   as in batch mode) once a batch's worth of results has come in (`refit_due`), so a small
   refill does not multiply the training.

Nothing else changes: the ledger is written first, a killed run re-attaches to every job
in flight, budgets count the jobs in flight against the oracle-call budget. A result is
recorded with the iteration in which it came back; its job's tag names the iteration that
chose it (``…@N``), so a refill's forecast error is measured against the forecast made
when the design was chosen. Once the campaign stops for its hits or a budget, the jobs
still in flight are paid for: a last iteration (`drain`) collects them without choosing.

Here are only the rules, as pure functions of the state and the jobs in flight; the
effects stay in `agent.campaign.loop` and `agent.campaign.runner`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from agent.campaign.batch import Batch
from agent.campaign.journal import Job
from agent.campaign.ledger import LedgerRecord
from agent.campaign.plan import first_batch, n_observed
from agent.campaign.state import CampaignState
from agent.campaign.store import CampaignStore
from agent.design.trained import TrainedModels
from oracles.base import ErrorClass, design_digest

__all__ = ["CHOSEN_IN", "Forecasts", "chosen_in", "enough", "forecasts", "is_async", "refit_due", "slots", "tag"]

CHOSEN_IN = "@"  # a job tag's suffix naming the iteration that chose the design (async mode)
Forecasts = dict[str, tuple[float, float]]  # design digest -> (forecast, its σ) when it was chosen


def is_async(state: CampaignState) -> bool:
    return state.config.loop.mode == "async"


def slots(state: CampaignState, in_flight: Sequence[Job], *, drain: bool = False) -> int | None:
    """Designs this iteration may choose: ``None`` for the batch's own size (batch mode, and an
    asynchronous campaign's first batch), ``0`` when every slot is taken or the campaign drains."""
    if drain:
        return 0
    if not is_async(state) or first_batch(state):
        return None
    cap = state.config.loop.in_flight_cap
    assert cap is not None  # async mode always has one
    return max(0, cap - len(in_flight))


def enough(state: CampaignState, *, drain: bool = False) -> int | None:
    """Results this run of the iteration waits for before it learns (``None``: every job's).

    A resumed refill counts the results its killed run already recorded; an infrastructure
    failure does not count (the design is re-sent and keeps its slot).
    """
    if drain or not is_async(state):
        return None
    got = sum(
        1
        for r in state.records
        if r.iteration == state.iteration
        and not r.external
        and (r.result.ok or r.result.error_class is not ErrorClass.INFRASTRUCTURE)
    )
    return max(0, state.config.loop.refill_size - got)


def refit_due(state: CampaignState, previous: TrainedModels | None) -> bool:
    """Whether this iteration fits its networks (the surrogate ensemble and the generator).

    Batch mode: always. Async mode: once a batch's worth (``batch_size``) of results has come
    in since ``previous`` was fitted; between those full refits a refill keeps the networks
    and refits only the GP models (the acquisition's and the constraints'), which learn from
    every result. Training per result then costs what it costs in batch mode, however small
    the refill. With ``[models] acquisition = "ensemble"`` the networks score the candidates
    themselves, so they are refitted at every refill.
    """
    if not is_async(state) or previous is None or state.config.models.acquisition != "gp":
        return True
    fitted = int(previous.fit.get("n_observed", -(10**9)))
    return n_observed(state) - fitted >= state.config.loop.batch_size


def tag(state: CampaignState, base: str) -> str:
    """A job's tag: ``base``, and in async mode the iteration choosing it (`CHOSEN_IN`)."""
    return f"{base}{CHOSEN_IN}{state.iteration}" if is_async(state) else base


def chosen_in(tag_: str) -> int | None:
    """The iteration named by an async job's tag; ``None`` for a tag without one."""
    _, sep, tail = tag_.rpartition(CHOSEN_IN)
    return int(tail) if sep and tail.isdigit() else None


def forecasts(store: CampaignStore, state: CampaignState, records: Iterable[LedgerRecord]) -> Forecasts:
    """The forecasts of earlier iterations' designs among ``records`` (read from their ``batch.csv``)."""
    out: Forecasts = {}
    wanted = {i for r in records if (i := chosen_in(r.tag)) is not None and i != state.iteration}
    for i in sorted(wanted):
        path = store.iteration_dir(i) / "batch.csv"
        if not path.exists():
            continue
        batch = Batch.read(path, state)
        for row, mu, sd in zip(state.space.to_rows(batch.physical(state)), batch.pred, batch.std):
            out[design_digest(row)] = (float(mu), float(sd))
    return out
