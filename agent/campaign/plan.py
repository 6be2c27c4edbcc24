"""Planning an iteration: state and models in, models and batch out, with no effects.

The four planning stages of `agent.campaign.loop.step`, in order:

1. `retrain`  the surrogate ensemble and the generator on every observation, warm from
              copies of the last iteration's models, then the acquisition's model
              (`with_acquisition_model`); or only the latter for models a killed run saved;
2. `sample`   generator draws for each target, through the `Sampler` (in process or Ray);
3. `refine`   the candidate funnel (`agent.design.funnel.propose_candidates`) with the
              loop's settings (`loop_funnel`), or the rows of an oracle that measures only
              its own pool;
4. `choose`   the batch: random while there is too little data, else the batch-aware
              acquisition (BoTorch window probability, times the probability of
              meeting ``[[constraints]]``, and uncertainty, `choose_batch`),
              each target's hits spread over the families of designs its models believe
              reach it (`believed_families`; those designs join the candidates).

Pure: nothing here reads or writes a file, talks to the oracle, reads the clock, or
changes what it is given (the context, a `TrainedModels` bundle, `Candidates`). What
planning needs from the world (the pool, designs in flight, the initial designs file)
the loop gathers into `PlanInputs` first. Randomness comes from ``(seed, iteration,
stage)`` streams, so the same state and inputs plan the same batch in any process: a
resumed campaign repeats an uninterrupted one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from botorch.models.model import Model

from agent.campaign.batch import Batch
from agent.campaign.feasibility import believed_feasible, log_feasible, with_feasibility_models
from agent.campaign.state import (
    DEFAULT_FAMILIES,
    CampaignState,
    hit_designs,
    measured_unit,
    nearest_distance,
    observed,
    still_wanted,
)
from agent.design.acquisition import SelectionConfig, Spread, choose_batch, log_window_probability, posterior_std
from agent.design.coverage import Families
from agent.design.coverage import believed_families as believed_families_of
from agent.design.funnel import Candidates, FunnelConfig, propose_candidates, snap_candidates
from agent.design.localize import LocalizeConfig, localize
from agent.design.sampling import LocalSampler, Sampler
from agent.design.trained import TrainedModels
from agent.models.gp import fit_gp
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from agent.models.transfer import ScaleMap, TransferSource
from generators import make_generator
from generators.base import TrainConfig

__all__ = [
    "LOOP_FUNNEL",
    "MIN_TRAIN",
    "PlanInputs",
    "believed_families",
    "choose",
    "first_batch",
    "loop_funnel",
    "n_observed",
    "refine",
    "retrain",
    "sample",
    "transfer_map",
    "with_acquisition_model",
]

MIN_TRAIN = 8  # below this many completed observations the batch is random
BELIEF_SAMPLES = 2000  # uniform designs per target localized to find where its models believe hits lie
BELIEF_LOCALIZE = LocalizeConfig(max_steps=20)
KEPT_FIT = ("n_train", "n_observed", "sigma_scale")  # what a reused bundle still reports of its last fit
BELIEVED = -2  # the source of a candidate found by `believed_families` (-1: uniform, i >= 0: target i's draws)

# The loop's funnel: a wide, diverse candidate set for the acquisition to rank (by window
# probability, σ and spacing), not a person's short list. Draws are localized a few steps
# towards the target and kept whether or not they converged, no down-selection before,
# no σ cap (``[loop] max_sigma`` bars uncertain hits in `choose`, never exploration), and
# as many uniform designs as draws per target give exploration candidates everywhere.
# `loop_funnel` fills in the sizes from ``[loop] samples_per_target``.
# Measured with ``python -m benchmarks.campaign --oracle mock --targets 1.0 1.5 --seeds 5``
# (median oracle calls to 50 diverse hits): these settings 117 and 122; the design
# funnel's down-selection (±0.2 eV) before localizing, alone or with 40 steps and
# converged designs only, 122 and 121. The acquisition picks nearly the same in-window
# designs either way; the wide set has the better figure, so the loop keeps it.
LOOP_FUNNEL = FunnelConfig(
    prefilter_window=None, localize=LocalizeConfig(max_steps=15), converged_only=False, max_sigma=None
)


@dataclass(frozen=True)
class PlanInputs:
    """What planning reads besides the state, gathered by the loop beforehand; never written.

    ``pool``: unit-box rows ``(m, d)`` of an oracle that measures only those (no generator
    is trained then); ``pending``: unit-box designs ``(k, d)`` still at the oracle;
    ``designs``: physical designs ``(k, d)`` of ``[initial] designs`` for the first batch.
    """

    previous: TrainedModels | None = None  # the last iteration's models: warm starts
    trained: TrainedModels | None = None  # this iteration's, saved by a killed run: no training
    pool: np.ndarray | None = None
    pending: np.ndarray | None = None
    designs: np.ndarray | None = None
    sampler: Sampler = field(default_factory=LocalSampler)
    source: TransferSource | None = None  # [transfer]: informs the models, never a measurement
    slots: int | None = None  # designs to choose (async mode's free slots); None: the batch's size
    refit: bool = True  # False: keep ``previous``'s networks, refit only the GP models (an async refill)


def first_batch(state: CampaignState) -> bool:
    """The campaign's oracle has measured nothing yet: its batch is the initial one (measurements
    given from outside before it do not replace the initial designs)."""
    return state.iteration == 0 and state.calls == 0


def loop_funnel(state: CampaignState) -> FunnelConfig:
    """`LOOP_FUNNEL` with ``samples_per_target`` draws per target and as many uniform designs."""
    n = state.config.loop.samples_per_target
    return replace(LOOP_FUNNEL, n_samples=n, uniform=n)


def anchors(state: CampaignState) -> list[float]:
    """Per target, the property value the generator is conditioned on and the funnel aims at
    (`TargetRange.anchor`: a ``value ± window`` target's value, a range's centre, or for an
    open side the middle of what is known beyond its edge)."""
    targets = state.config.targets
    if all(t.value is not None for t in targets):  # value ± window: the value itself, nothing to read
        return [float(t.value) for t in targets if t.value is not None]
    material = state.config.design_material()
    known = observed(state)[1]
    floor, ceiling = material.target_lower_bound, material.target_upper_bound
    return [t.range.anchor(known, floor, ceiling) for t in targets]


def _rng(state: CampaignState, stage: int) -> np.random.Generator:
    return np.random.default_rng([state.config.seed, state.iteration, stage])


# -- 1. retrain ------------------------------------------------------------------------------
def retrain(state: CampaignState, given: PlanInputs) -> TrainedModels | None:
    """This iteration's models: those a killed run saved, or fitted now (``given.refit``; else
    ``previous``'s networks as they are); with the acquisition's model and the models of the
    constrained properties (both refitted from the ledger, always)."""
    source, previous = given.source, given.previous
    if given.trained is not None:
        models: TrainedModels | None = given.trained
    elif not given.refit and previous is not None:  # the GP models below still learn every new result
        fit = {k: v for k, v in previous.fit.items() if k in KEPT_FIT} | {"reused": True}
        models = TrainedModels(previous.surrogate, previous.generator, fit=fit)
    else:
        models = _fit(state, previous, given.pool is not None, source)
    if models is not None and source is not None:  # the map, in metrics.json and `innloop status`
        record = source.record(transfer_map(state, source), n_observed(state))
        models = replace(models, fit=models.fit | {"transfer": record})
    return with_feasibility_models(state, with_acquisition_model(state, models, source))


def transfer_map(state: CampaignState, source: TransferSource) -> ScaleMap:
    """The source's map onto this campaign's scale, fitted on its results so far (`agent.models.transfer`)."""
    return source.fit_map(*observed(state))


def n_observed(state: CampaignState) -> int:
    return len(observed(state)[1])


def _fit(
    state: CampaignState, previous: TrainedModels | None, pool: bool, source: TransferSource | None = None
) -> TrainedModels | None:
    """Fit the surrogate and (unless the oracle measures a pool) the generator on every observation,
    plus, with a transfer ``source``, its replayed rows on this campaign's scale (`TransferSource.replay`);
    those train the networks but never calibrate the surrogate's σ (the measurements alone do).

    A warm start trains copies of ``previous``'s models, so the bundle passed in stays as it was.
    """
    U, y = observed(state)
    if len(y) < MIN_TRAIN:
        return None
    measured = None  # the rows σ may be calibrated on: the measurements, never the replay
    if source is not None:
        replay_U, replay_y = source.replay(transfer_map(state, source), len(y), state.config.seed)
        measured = np.arange(len(y) + len(replay_y)) < len(y)
        U, y = np.vstack([U, replay_U]), np.concatenate([y, replay_y])
    m = state.config.models
    if previous is not None:
        surrogate = copy.deepcopy(previous.surrogate)
    else:
        cfg = EnsembleConfig(
            members=m.members, epochs=m.surrogate_epochs, warm_epochs=m.surrogate_warm_epochs, seed=state.config.seed
        )
        surrogate = SurrogateEnsemble(U.shape[1], cfg)
    summary = surrogate.fit(U, y, warm_start=True, calibrate=measured)
    fit: dict[str, Any] = {"n_train": len(y), "surrogate_s": summary.seconds, "sigma_scale": summary.sigma_scale}
    fit["n_observed"] = n_observed(state)
    fit["warm"] = summary.warm_started
    generator = copy.deepcopy(previous.generator) if previous is not None and previous.generator is not None else None
    # an oracle that measures listed designs only (a pool) could not measure generated ones
    if not pool:
        if generator is None:
            generator = make_generator(m.generator, U.shape[1])
        tcfg = TrainConfig(epochs=m.generator_epochs, warm_epochs=m.generator_warm_epochs, seed=state.config.seed)
        report = generator.fit(_tensor(U), _tensor(y), config=tcfg, warm_start=True)
        fit["generator_s"] = report.seconds
    return TrainedModels(surrogate, generator, fit=fit)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32)


def with_acquisition_model(
    state: CampaignState, models: TrainedModels | None, source: TransferSource | None = None
) -> TrainedModels | None:
    """``models`` with the acquisition's GP fitted when the config asks for one (a new bundle;
    deterministic for given data), its prior mean the mapped transfer ``source`` if any;
    unchanged otherwise."""
    m = state.config.models
    if models is None or m.acquisition != "gp" or models.acquisition is not None:
        return models
    U, y = observed(state)
    gp = fit_gp(
        U,
        y,
        symmetries=state.config.design_material().symmetries,
        targets=anchors(state),
        max_points=m.gp_max_points,
        seed=state.config.seed,
        prior=None if source is None else source.prior(transfer_map(state, source)),
    )
    return replace(models, acquisition=gp)


# -- 2. sample --------------------------------------------------------------------------------
def sample(state: CampaignState, models: TrainedModels | None, given: PlanInputs) -> list[np.ndarray]:
    """Generator draws ``(n, d)`` per target (empty for a target outside what the generator learned)."""
    if models is None or models.generator is None or given.pool is not None:
        return [np.zeros((0, state.space.unit_dim)) for _ in state.config.targets]
    n = loop_funnel(state).n_samples
    jobs = [(a, n, int(_rng(state, 10 + i).integers(2**31))) for i, a in enumerate(anchors(state))]
    return given.sampler.sample(models.generator, jobs)


# -- 3. refine --------------------------------------------------------------------------------
def refine(
    state: CampaignState, models: TrainedModels | None, samples: list[np.ndarray], given: PlanInputs
) -> Candidates:
    """The loop's funnel over every target's draws, plus uniform designs; or the oracle's pool."""
    if given.pool is not None:
        return Candidates(given.pool, np.full(len(given.pool), -1), {"pool": len(given.pool)})
    surrogate = models.surrogate if models is not None else None
    return propose_candidates(state.space, surrogate, samples, anchors(state), loop_funnel(state), _rng(state, 3))


# -- 4. choose --------------------------------------------------------------------------------
def choose(
    state: CampaignState, models: TrainedModels | None, cands: Candidates, given: PlanInputs
) -> tuple[Batch, Candidates]:
    """The batch, and ``cands`` with what the choice barred counted (a new object).

    ``[loop] max_sigma`` (as ``innloop design --max-sigma``): a candidate whose deep-ensemble
    σ is above it never serves a target as a likely hit (``exploit``); it may still be
    explored, and hit slots it leaves go to exploration (`choose_batch`). The count it
    barred goes to ``counts["over_max_sigma"]``. ``None`` (default): no cap.
    """
    cfg = state.config
    pending = given.pending if given.pending is not None else np.zeros((0, state.space.unit_dim))
    room = cfg.budget.oracle_calls - state.calls - len(pending) if cfg.budget.oracle_calls is not None else 10**9
    first = first_batch(state)
    wanted = given.slots if given.slots is not None else cfg.initial.random if first else cfg.loop.batch_size
    size = max(0, min(wanted, room))
    if first and given.designs is not None:
        return _given_designs(state, given.designs, size), cands
    known = np.vstack([measured_unit(state), pending])
    fams: list[Families | None] = []
    if models is not None:  # believed solutions no draw came near: every family has its candidates
        fams, believed = believed_families(state, models, given)
        extra = believed[nearest_distance(believed, np.vstack([known, cands.U])) > 1e-9]
        cands = replace(
            cands.plus(extra, BELIEVED), families=tuple(fams), counts=cands.counts | {"believed": len(extra)}
        )
    U = cands.U[nearest_distance(cands.U, known) > 1e-9]
    if models is None:
        pick = _rng(state, 4).choice(len(U), size=min(size, len(U)), replace=False)
        nan = np.full(len(pick), np.nan)
        return Batch(U[pick], np.full(len(pick), -1), ["seed"] * len(pick), nan, nan, nan), cands
    scorer = models.scorer
    lpf = np.stack([log_window_probability(scorer, U, t.range.lo, t.range.hi) for t in cfg.targets])
    sigma = posterior_std(scorer, U)
    sel = SelectionConfig(size, cfg.loop.exploration, cfg.loop.min_distance)
    hit_ok = None
    if cfg.loop.max_sigma is not None:
        hit_ok = models.surrogate.predict(U)[1] <= cfg.loop.max_sigma
        cands = replace(cands, counts=cands.counts | {"over_max_sigma": int((~hit_ok).sum())})
    hits = hit_designs(state)
    spread = [
        None if f is None else _spread(f, h, pending, gentle=given.pool is not None and t.families is None)
        for t, f, h in zip(cfg.targets, fams, hits)
    ]
    choice = choose_batch(
        lpf,
        sigma,
        U,
        still_wanted(state, fams),
        sel,
        pending=pending,
        hits=hits,
        hit_ok=hit_ok,
        spread=spread,
        log_feasible=log_feasible(state, models, U),  # P(window) × P(feasible) under [[constraints]]
    )
    mean, std = _predict(scorer, U[choice.index])
    return Batch(U[choice.index], choice.target, choice.reason, mean, std, choice.score), cands


def _spread(families: Families, hits: np.ndarray, pending: np.ndarray, *, gentle: bool) -> Spread:
    """How one target's hits are spread over its believed ``families``: probes only while
    some family holds no hit or pending design, each the size of a family.

    ``gentle`` (a pool oracle, and the target names no ``families``): no probes, and only
    candidates nine tenths as likely as the best are reordered by crowding. A pool's rows
    are spread as its data are, so its hits already reach most families (issue 16 measured
    8-9 of 10 on the MoS2 table without spreading), and there every slot taken from the
    likeliest rows costs a hit: the probes that the generator path needs made the table's
    calls to 50 hits 134 instead of 97 (5 seeds, medians), the gentle order 105.
    """
    if gentle:
        return Spread(families.radius, probes=0, floor=0.9)
    lacking = int((families.load(np.vstack([hits, pending])) == 0).sum())
    return Spread(families.radius, probes=lacking)


def believed_families(
    state: CampaignState, models: TrainedModels, given: PlanInputs
) -> tuple[list[Families | None], np.ndarray]:
    """Per target, the families of the designs its models believe reach it, and those designs
    ``(m, d)`` for every target together (candidates in every family, not only where draws went).

    Believed designs: with a pool, its rows the surrogate predicts in the target's range;
    otherwise ``BELIEF_SAMPLES`` uniform valid designs (stream ``50 + t``; fewer when
    ``[loop] samples_per_target`` asks for fewer generator draws) localized onto the
    surrogate's level set of the target's anchor, those that reached the range and whose
    constrained properties' models put them within their limits (``[[constraints]]``). Uniform
    starts cover every basin the surrogate has, so k-means finds its regions instead of
    splitting the densest one. ``targets[t].families`` families per target
    (`DEFAULT_FAMILIES` unset); ``families = 1`` leaves hits to probability alone (``None``).
    """
    space, surrogate = state.space, models.surrogate
    fams: list[Families | None] = []
    found: list[np.ndarray] = []
    pool = given.pool
    pool_mean = surrogate.predict(pool)[0] if pool is not None and len(pool) else None  # once for every target
    pool_ok = believed_feasible(state, models, pool) if pool is not None else None
    for i, (t, anchor) in enumerate(zip(state.config.targets, anchors(state))):
        mean = pool_mean
        if pool is not None:
            U = pool
        else:
            U = space.sample_unit(_rng(state, 50 + i), min(BELIEF_SAMPLES, state.config.loop.samples_per_target))
            U = localize(surrogate, U, anchor, BELIEF_LOCALIZE).U
            U = snap_candidates(space, U[space.valid_mask(space.from_unit(U))])[0]
            mean = surrogate.predict(U)[0] if len(U) else None
        ok = pool_ok if pool_ok is not None else believed_feasible(state, models, U)
        inside = t.range.contains(mean) & ok if mean is not None else np.zeros(0, dtype=bool)
        found.append(U[inside])  # a target asking families = 1 still gets these as candidates
        k = t.families or DEFAULT_FAMILIES
        fams.append(believed_families_of(U, inside, k, seed=state.config.seed) if k > 1 else None)
    believed = np.vstack(found)
    if len(believed):  # targets believe in the same designs at times (snapped, or a pool's rows)
        believed = believed[np.sort(np.unique(believed, axis=0, return_index=True)[1])]
    return fams, believed


def _given_designs(state: CampaignState, X: np.ndarray, random: int) -> Batch:
    """The first batch: the physical designs ``X (k, d)`` of ``initial.designs`` plus ``random`` uniform ones."""
    space = state.space
    X = np.vstack([X, space.from_unit(space.sample_unit(_rng(state, 4), random))])
    nan = np.full(len(X), np.nan)
    return Batch(space.to_unit(X), np.full(len(X), -1), ["seed"] * len(X), nan, nan, nan, X)


def _predict(model: Model, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation ``(n,)`` of any BoTorch model at ``U (n, d)``."""
    if len(U) == 0:
        return np.zeros(0), np.zeros(0)
    p = next(iter(model.parameters()), None)
    with torch.no_grad():
        post: Any = model.posterior(torch.as_tensor(U, dtype=p.dtype if p is not None else torch.float64).unsqueeze(-2))
        mean = post.mean.reshape(len(U)).double().numpy()
        std = post.variance.reshape(len(U)).clamp_min(0).sqrt().double().numpy()
    return mean, std
