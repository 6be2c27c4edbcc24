"""One inverse-design pass: generate -> down-select -> localize -> down-select.

This is the MatDesINNe procedure as a function of its parts, so the loop, the CLI and
the benchmark all run the same code and any generator can be put in front of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from agent.core.errors import ConfigError, TargetError
from agent.core.space import DesignSpace
from agent.design.localize import LocalizeConfig, downselect, localize
from agent.models.surrogate import SurrogateEnsemble
from generators import Generator

__all__ = ["DesignConfig", "DesignResult", "check_target", "generate_candidates"]


@dataclass
class DesignConfig:
    """How many samples, how wide the first filter is, and whether to refine.

    ``prefilter_window``: keep generated samples predicted within this many units of the
    target before localization (the paper's down-selection). ``max_sigma``: drop final
    candidates whose calibrated ensemble σ exceeds this (``None`` keeps all).
    """

    n_samples: int = 10_000
    seed: int = 0
    refine: bool = True
    prefilter_window: float = 0.2
    max_sigma: float | None = 0.05
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ConfigError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.prefilter_window <= 0:
            raise ConfigError("prefilter_window must be > 0")
        if self.max_sigma is not None and self.max_sigma <= 0:
            raise ConfigError("max_sigma must be > 0 or None")


@dataclass
class DesignResult:
    """Candidates (physical columns + ``pred``, ``pred_std``), funnel counts and stage timings."""

    candidates: pd.DataFrame
    U: np.ndarray
    counts: dict[str, int]
    seconds: dict[str, float]


def check_target(target: float, low: float, high: float, what: str = "training data") -> float:
    """Refuse targets outside ``[low, high]``: no model can be trusted beyond its data."""
    t = float(target)
    if not np.isfinite(t) or t < low - 1e-9 or t > high + 1e-9:
        raise TargetError(f"target {target} is outside the range of the {what} [{low:.3g}, {high:.3g}]")
    return t


def generate_candidates(
    space: DesignSpace,
    generator: Generator,
    surrogate: SurrogateEnsemble,
    target: float,
    config: DesignConfig | None = None,
) -> DesignResult:
    """Sample ``n_samples`` designs for ``target`` and return those that survive the funnel.

    Without ``refine`` the raw generator samples are returned (all of them, also those
    outside the box), which is how a generator is judged on its own.
    """
    cfg = config or DesignConfig()
    lo, hi = (float(v) for v in surrogate.y_range)
    target = check_target(target, lo, hi)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    U = generator.sample(target, cfg.n_samples, seed=cfg.seed).detach().cpu().numpy().astype(np.float64)
    seconds["generate"] = time.perf_counter() - t0
    counts = {"generated": len(U)}
    if not cfg.refine:
        mean, std = surrogate.predict(U)
        counts["final"] = len(U)
        seconds["total"] = time.perf_counter() - t0
        return DesignResult(_frame(space, U, mean, std), U, counts, seconds)

    t1 = time.perf_counter()
    mean, std = surrogate.predict(U)
    # for a 0 eV target the localizer aims below zero by the metal margin: widen by as much
    window = cfg.prefilter_window + (cfg.localize.metal_margin if target <= 0 else 0.0)
    keep = downselect(space, U, mean, std, target, window)
    U = U[keep]
    counts["prefiltered"] = len(U)
    seconds["downselect"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    loc = localize(surrogate, U, target, cfg.localize)
    seconds["localize"] = time.perf_counter() - t2
    counts["converged"] = int(loc.converged.sum())

    t3 = time.perf_counter()
    U = loc.U[loc.converged]
    mean, std = surrogate.predict(U)
    # the localizer drives the mean *signed* gap; the reported mean gap may differ by a hair
    final = downselect(space, U, mean, std, target, 2 * cfg.localize.tol, cfg.max_sigma)
    U, mean, std = U[final], mean[final], std[final]
    counts["final"] = len(U)
    seconds["select"] = time.perf_counter() - t3
    seconds["total"] = time.perf_counter() - t0
    return DesignResult(_frame(space, U, mean, std), U, counts, seconds)


def _frame(space: DesignSpace, U: np.ndarray, mean: np.ndarray, std: np.ndarray) -> pd.DataFrame:
    df = space.to_frame(space.from_unit(U)) if len(U) else pd.DataFrame(columns=space.names)
    df["pred"] = mean
    df["pred_std"] = std
    return df
