"""The one candidate funnel: sample -> down-select -> localize -> σ cap.

``innloop design``, every campaign iteration (`agent.campaign.plan.refine`) and the
report's "what the campaign would propose now" (`agent.report.inputs.candidate_sets`) run
these functions; what differs between them is a `FunnelConfig`, never the code:

1. **sample**: ``n_samples`` generator draws per target (`agent.design.sampling`; the loop
   draws as a stage of its own, possibly on Ray actors);
2. **down-select**: keep the draws inside the design space that the surrogate predicts
   within ``±prefilter_window`` of the target (MatDesINNe's down-selection; ``None``: off);
3. **localize**: move each onto the surrogate's level set of the target
   (`agent.design.localize`; ``None``: keep the draws where they are); with
   ``converged_only`` keep only those that reached it (``|mean - target| <= 2 tol``);
4. **σ cap**: drop candidates whose calibrated ensemble σ exceeds ``max_sigma`` (``None``:
   off). Every survivor lies inside the design space.

``uniform`` adds that many uniform designs of the unit box (source ``-1``), kept where
valid: candidates where no generator points, for a batch's exploration.

`DESIGN` is the ``innloop design`` funnel: a short list of confident designs for a person.
The loop's settings are `agent.campaign.plan.LOOP_FUNNEL`, with the reason they differ.

Arrays: unit-box designs ``U (n, d)``; per design ``source``, ``mean``, ``std`` ``(n,)``.
Nothing here reads the clock or a file: a caller that wants stage timings passes a
``stage`` runner (``innloop design`` times each stage through one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd

from agent.core.errors import ConfigError, TargetError
from agent.core.space import DesignSpace
from agent.design.coverage import Families
from agent.design.localize import LocalizeConfig, downselect, localize
from agent.design.sampling import sample_job
from agent.models.surrogate import SurrogateEnsemble
from generators import Generator

__all__ = [
    "DESIGN",
    "Candidates",
    "FunnelConfig",
    "StageRunner",
    "check_target",
    "design",
    "funnel",
    "propose_candidates",
    "run_directly",
]

T = TypeVar("T")


class StageRunner(Protocol):
    """Runs one named stage of the funnel (``sample``, ``downselect``, ``localize``, ``select``)."""

    def __call__(self, name: str, fn: Callable[[], T], /) -> T: ...


def run_directly(_name: str, fn: Callable[[], T], /) -> T:
    """The default `StageRunner`: just run the stage."""
    return fn()


@dataclass(frozen=True)
class FunnelConfig:
    """The settings of the funnel's four stages (see the module docstring), plus ``uniform``.

    ``raw``: the draws as they come, no stage after sampling, not even the design-space
    check: how a generator is judged on its own.
    """

    n_samples: int = 10_000  # generator draws per target
    prefilter_window: float | None = 0.2
    localize: LocalizeConfig | None = field(default_factory=LocalizeConfig)
    converged_only: bool = True
    max_sigma: float | None = 0.05
    uniform: int = 0
    raw: bool = False

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ConfigError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.prefilter_window is not None and self.prefilter_window <= 0:
            raise ConfigError("prefilter_window must be > 0 or None")
        if self.max_sigma is not None and self.max_sigma <= 0:
            raise ConfigError("max_sigma must be > 0 or None")
        if self.uniform < 0:
            raise ConfigError(f"uniform must be >= 0, got {self.uniform}")


DESIGN = FunnelConfig()  # ``innloop design``: down-select ±0.2, localize to 2 tol, σ <= 0.05


@dataclass
class Candidates:
    """Unit-box candidates ``U (n, d)``, where each came from (``source (n,)``: the target's
    index, -1 uniform or a pool row), the surrogate's ``mean`` and ``std`` ``(n,)`` (``None``
    where no surrogate judged them) and how many designs each stage kept (``counts``)."""

    U: np.ndarray
    source: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    families: tuple[Families | None, ...] = ()  # per target, where its models believe hits lie

    def plus(self, U: np.ndarray, source: int) -> Candidates:
        """These candidates and the designs ``U (m, d)`` from ``source`` after them (a new object;
        predictions dropped when ``U`` adds rows, as the new ones have none)."""
        if len(U) == 0:
            return self
        return replace(
            self,
            U=np.vstack([self.U, U]),
            source=np.concatenate([self.source, np.full(len(U), source)]),
            mean=None,
            std=None,
        )

    def frame(self, space: DesignSpace) -> pd.DataFrame:
        """Physical design columns plus ``pred`` and ``pred_std`` (NaN where not predicted)."""
        if len(self.U):
            df = space.to_frame(space.from_unit(self.U))
        else:
            df = pd.DataFrame({n: pd.Series(dtype=float) for n in space.names})
        df["pred"] = self.mean if self.mean is not None else np.nan
        df["pred_std"] = self.std if self.std is not None else np.nan
        return df


def check_target(target: float, low: float, high: float, what: str = "training data") -> float:
    """Refuse targets outside ``[low, high]``: no model can be trusted beyond its data."""
    t = float(target)
    if not np.isfinite(t) or t < low - 1e-9 or t > high + 1e-9:
        raise TargetError(f"target {target} is outside the range of the {what} [{low:.3g}, {high:.3g}]")
    return t


def design(
    space: DesignSpace,
    generator: Generator,
    surrogate: SurrogateEnsemble,
    target: float,
    config: FunnelConfig = DESIGN,
    *,
    seed: int = 0,
    stage: StageRunner = run_directly,
) -> Candidates:
    """All four stages for one ``target``: ``config.n_samples`` seeded draws, then `funnel`.

    Refuses a target outside the surrogate's training range (`check_target`).
    """
    lo, hi = (float(v) for v in surrogate.y_range)
    target = check_target(target, lo, hi)
    U = stage("sample", lambda: sample_job(generator, (target, config.n_samples, seed)))
    return funnel(space, surrogate, U, target, config, stage)


def funnel(
    space: DesignSpace,
    surrogate: SurrogateEnsemble,
    U: np.ndarray,
    target: float,
    config: FunnelConfig = DESIGN,
    stage: StageRunner = run_directly,
) -> Candidates:
    """Stages 2-4 for the draws ``U (n, d)`` aimed at ``target``; every survivor has source 0.

    Counts: ``generated``, then ``prefiltered`` and ``converged`` when those stages run,
    ``invalid`` (outside the design space at the last stage) and ``final``.
    """
    U = np.asarray(U, dtype=np.float64)
    counts = {"generated": len(U)}
    if config.raw:
        mean, std = _predict(surrogate, U)
        return Candidates(U, np.zeros(len(U), dtype=int), counts | {"final": len(U)}, mean, std)
    if config.prefilter_window is not None:
        # for a 0 eV target the localizer aims below zero by the metal margin: widen by as much
        margin = (config.localize or LocalizeConfig()).metal_margin if target <= 0 else 0.0
        window = config.prefilter_window + margin

        def prefilter() -> np.ndarray:
            mean, std = _predict(surrogate, U)
            return U[downselect(space, U, mean, std, target, window)]

        U = stage("downselect", prefilter)
        counts["prefiltered"] = len(U)
    final_window = None
    loc = config.localize
    if loc is not None:
        moved = stage("localize", lambda: localize(surrogate, U, target, loc))
        counts["converged"] = int(moved.converged.sum())
        U = moved.U[moved.converged] if config.converged_only else moved.U
        # the localizer drives the mean *signed* gap; the reported mean gap may differ by a hair
        final_window = 2 * loc.tol if config.converged_only else None

    if not space.plain:  # integers and categories: the surrogate scores real designs only
        U, counts["snap_duplicates"] = snap_candidates(space, U)

    def select() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, std = _predict(surrogate, U)
        return downselect(space, U, mean, std, target, final_window, config.max_sigma), mean, std

    keep, mean, std = stage("select", select)
    counts["invalid"] = int((~space.valid_mask(space.from_unit(U))).sum()) if len(U) else 0
    counts["final"] = int(keep.sum())
    return Candidates(U[keep], np.zeros(int(keep.sum()), dtype=int), counts, mean[keep], std[keep])


def propose_candidates(
    space: DesignSpace,
    surrogate: SurrogateEnsemble | None,
    samples: Sequence[np.ndarray],
    targets: Sequence[float],
    config: FunnelConfig,
    rng: np.random.Generator,
) -> Candidates:
    """Stages 2-4 for several targets at once, plus ``config.uniform`` uniform designs.

    ``samples[i]`` are the draws ``(n_i, d)`` for ``targets[i]``; a target without draws,
    or without a surrogate to judge them, adds no candidates. Counts: each target's with a
    ``_i`` suffix, ``uniform``, then ``candidates`` (kept) and ``invalid`` (outside the
    design space at the last stage, over all targets and the uniform designs).
    """
    parts: list[Candidates] = []
    counts: dict[str, int] = {}
    invalid = 0
    for i, (target, U) in enumerate(zip(targets, samples)):
        counts[f"generated_{i}"] = len(U)
        if surrogate is None or len(U) == 0:
            continue
        got = funnel(space, surrogate, U, target, config)
        counts |= {f"{k}_{i}": v for k, v in got.counts.items() if k != "generated"}
        invalid += got.counts["invalid"]
        parts.append(replace(got, source=np.full(len(got.U), i)))
    if config.uniform:
        U, dropped = snap_candidates(space, rng.random((config.uniform, space.unit_dim)))
        ok = space.valid_mask(space.from_unit(U))
        mean, std = _predict(surrogate, U[ok]) if surrogate is not None else (None, None)
        parts.append(Candidates(U[ok], np.full(int(ok.sum()), -1), {}, mean, std))
        counts["uniform"] = config.uniform - dropped
        invalid += int((~ok).sum())
    out = _concat(parts, space.unit_dim)
    out.counts = counts | {"candidates": len(out.U), "invalid": invalid}
    return out


def snap_candidates(space: DesignSpace, U: np.ndarray) -> tuple[np.ndarray, int]:
    """Relaxed candidates ``U (n, unit_dim)`` on real designs (`DesignSpace.snap_unit`), the
    first of each set that became one design kept; and how many were dropped. A space of
    plain numbers has nothing to snap: ``U`` comes back as it is."""
    if space.plain or len(U) == 0:
        return U, 0
    snapped = space.snap_unit(U)
    _, first = np.unique(snapped, axis=0, return_index=True)
    keep = np.sort(first)
    return snapped[keep], len(U) - len(keep)


def _concat(parts: list[Candidates], dim: int) -> Candidates:
    """One `Candidates` of ``parts`` in order; predictions only when every part has them."""
    if not parts:
        return Candidates(np.zeros((0, dim)), np.zeros(0, dtype=int))
    predicted = all(p.mean is not None and p.std is not None for p in parts)
    return Candidates(
        np.vstack([p.U for p in parts]),
        np.concatenate([p.source for p in parts]),
        mean=np.concatenate([p.mean for p in parts if p.mean is not None]) if predicted else None,
        std=np.concatenate([p.std for p in parts if p.std is not None]) if predicted else None,
    )


def _predict(surrogate: SurrogateEnsemble, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The surrogate's mean and σ ``(n,)`` for ``U (n, d)`` (empty in, empty out)."""
    if len(U) == 0:
        return np.zeros(0), np.zeros(0)
    return surrogate.predict(U)
