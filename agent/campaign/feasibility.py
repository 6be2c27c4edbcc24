"""The loop's models of its constrained properties, and what planning asks of them.

Each ``[[constraints]]`` property gets an exact GP of its own (`agent.models.gp.fit_gp`:
cheap for the few hundred results a campaign has, and calibrated, which a probability of
feasibility needs more than a sharp mean), fitted on the completed measurements that
carry it. Why not a head of the deep ensemble: the property is measured on the same
designs but may be missing where the target is not (and the other way round), and its
scale, noise and smoothness are its own.

Crash discipline: the models are refitted every iteration from the ledger, never saved,
as the acquisition's GP is. The fit is deterministic for given rows (seeded from the
campaign's seed; rows in the ledger's canonical order), so a resumed run plans exactly
what an uninterrupted one would have, with nothing extra on disk to lose or verify.

The GP is fitted without the material's symmetries: those are declared for the target
property, and a second property need not share them (a recipe's cost is not symmetric
in two interchangeable catalysts' amounts when their prices differ).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from botorch.models.model import Model

from agent.campaign.constraints import limit_values
from agent.campaign.state import CampaignState, ledger_arrays
from agent.design.acquisition import log_feasibility
from agent.design.trained import TrainedModels
from agent.models.gp import fit_gp

__all__ = ["MIN_LIMIT_TRAIN", "believed_feasible", "fit_limit_models", "log_feasible", "with_feasibility_models"]

MIN_LIMIT_TRAIN = 3  # below this many results carrying a property, it has no model (P(feasible) = 1)


def fit_limit_models(state: CampaignState) -> tuple[Model | None, ...]:
    """One GP per constrained property, on the ledger's completed results that carry it."""
    limits = state.config.constraints
    if not limits:
        return ()
    U, _ = ledger_arrays(state)
    values = limit_values(state.records, limits)
    m = state.config.models
    out: list[Model | None] = []
    for j, limit in enumerate(limits):
        has = np.isfinite(values[:, j])
        if has.sum() < MIN_LIMIT_TRAIN:
            out.append(None)
            continue
        # the rows nearest the bounds decide P(feasible) where it matters, should the cap bite
        bounds = [b for b in (limit.min, limit.max) if b is not None]
        out.append(fit_gp(U[has], values[has, j], targets=bounds, max_points=m.gp_max_points, seed=state.config.seed))
    return tuple(out)


def with_feasibility_models(state: CampaignState, models: TrainedModels | None) -> TrainedModels | None:
    """``models`` with a model per constrained property (a new bundle); unchanged without limits."""
    if models is None or not state.config.constraints:
        return models
    fitted = fit_limit_models(state)
    fit = models.fit | {"feasibility_rows": _rows(state)}
    return replace(models, feasibility=fitted, fit=fit)


def _rows(state: CampaignState) -> list[int]:
    values = limit_values(state.records, state.config.constraints)
    return [int(n) for n in np.isfinite(values).sum(axis=0)]


def log_feasible(state: CampaignState, models: TrainedModels, U: np.ndarray) -> np.ndarray | None:
    """``log P(feasible)`` ``(n,)`` at unit-box ``U``, or ``None`` for an unconstrained campaign."""
    limits = state.config.constraints
    if not limits:
        return None
    return log_feasibility([(m, *c.bounds()) for m, c in zip(_models(models, len(limits)), limits)], U)


def believed_feasible(state: CampaignState, models: TrainedModels, U: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: each property's posterior mean within its bounds (true where it has no model)."""
    ok = np.ones(len(U), dtype=bool)
    limits = state.config.constraints
    if not limits or not len(U):
        return ok
    for model, limit in zip(_models(models, len(limits)), limits):
        if model is not None:
            ok &= limit.contains(_mean(model, U))
    return ok


def _models(models: TrainedModels, k: int) -> tuple[Model | None, ...]:
    """The bundle's limit models; none of them when the bundle was made without (a report's)."""
    return models.feasibility if len(models.feasibility) == k else (None,) * k


def _mean(model: Model, U: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        post: Any = model.posterior(torch.as_tensor(U, dtype=torch.float64))
        return post.mean.reshape(len(U)).numpy()
