"""Transfer from another material or fidelity: a source model, mapped onto the target's scale.

The method (the "prior-mean / residual" approach). A source of prior knowledge (a bundled
dataset of another material, another campaign's ledger) shares the target's parameters,
so its designs are points of the same unit box; but it is measured on another scale:
the bundled VASP MoS2 gaps sit ~0.45 eV below GPAW's for the same cell, and WS2 differs
from MoS2 in detail. So the target is modelled as

    y(u) = max(0, a + b · s(u)) + r(u)

with ``s`` the source ensemble's signed gap (its mean over members, before the ReLU: a
VASP metal may be a small-gap GPAW cell, and the signed value keeps that information),
``a, b`` a *map* fitted on the target's own results (`fit_scale_map`: least squares,
metals as a one-sided hinge as in the surrogate, with a Gaussian prior pulling ``b``
towards 1 and ``a`` towards 0, so a handful of results gives a sane map), and ``r`` the
residual a model learns from the target's data:

- the acquisition's GP takes ``max(0, a + b·s)`` as its prior mean (`SourcePrior`, handed
  to `agent.models.gp.fit_gp`); the kernel models the residual. This is where the
  source's weight falls by itself as the target's data grow: a GP's posterior follows its
  data wherever it has them and reverts to the prior mean only far from them;
- the deep ensemble and the generator (which cannot take a prior mean) are trained on the
  target's rows plus a *replay* of source designs labelled with the mapped source model,
  ``replay_rows`` of them: many while the target has few results, fewer as they grow
  (``cap · half / (half + n)``), always the same nested subset for a seed. This lets the
  cINN propose from its first fit, for target values the target's own data do not reach yet.

Why this rather than pre-training and fine-tuning the networks, or a multi-task GP: the
map is two numbers a user can read (``innloop status`` prints them) and that the first
eight or so results pin down; the GP keeps its exact small-data posterior with the
source entering only as a mean (no second task's hyperparameters to learn from a handful
of rows); and nothing here depends on training schedules.

Measured (``python -m benchmarks.new_material --methods innloop innloop-mos2``, same
seeds): on the first 65 rows of the WS2 GPAW table (the table was still being measured;
10 initial rows, 4 diverse hits), calls per seed at 0.3 eV 33 36 23 18 16 cold against
18 14 16 20 15 with the MoS2 source (medians 23 and 16, 0.70×), at 0.5 eV 41 23 34 37 23
against 16 15 21 23 17 (medians 34 and 17, 0.50×). The price: ~30 s an iteration instead of
~5 s on two cores, the ensemble's training on the replayed rows. On those rows the fitted
map is ``0.57 + 0.36 · s`` (r 0.71 between the source's signed gap and WS2's gapped rows):
the offset is the VASP-to-GPAW shift, the slope says WS2's gaps vary less with strain
than the VASP MoS2 model's, which is why ``b`` is fitted and not fixed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import least_squares
from torch import Tensor

from agent.models.surrogate import SurrogateEnsemble

__all__ = ["ScaleMap", "SourcePrior", "TransferSource", "fit_scale_map", "replay_rows", "source_signed"]

SCALE_PRIOR_SD = 0.25  # the map's slope: same physics, same relative strain -> near 1
OFFSET_PRIOR_SD = 1.0  # the offset, in units of the source's spread: codes and materials differ by a shift
NOISE = 0.1  # residual scale the map is fitted against, in units of the source's spread
REPLAY_CAP, REPLAY_HALF = 1000, 50  # replayed source rows: at most CAP, half of that at HALF target results


@dataclass(frozen=True)
class ScaleMap:
    """``max(0, offset + scale · s)``: the source's signed value ``s`` on the target's scale."""

    offset: float = 0.0
    scale: float = 1.0
    fitted_on: int = 0  # target results it was fitted on

    def __call__(self, signed: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, self.offset + self.scale * np.asarray(signed, dtype=np.float64))

    def record(self) -> dict[str, float | int]:
        return asdict(self)


def fit_scale_map(signed: np.ndarray, y: np.ndarray, spread: float) -> ScaleMap:
    """The map from the source's signed values ``signed (n,)`` to the target's values ``y (n,)``.

    Maximum a posteriori under Gaussian residuals (scale ``NOISE · spread``) and priors
    ``offset ~ N(0, (OFFSET_PRIOR_SD · spread)²)``, ``scale ~ N(1, SCALE_PRIOR_SD²)``;
    ``spread`` is the source's standard deviation. A target value at 0 (a metal) is right
    for any mapped value at or below 0 (a hinge). Deterministic: a convex problem solved
    from the prior's centre. With no rows, the prior's centre (the identity).
    """
    s = np.asarray(signed, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    if len(t) == 0:
        return ScaleMap()
    spread = max(float(spread), 1e-6)
    floor = t <= 0

    def residuals(p: np.ndarray) -> np.ndarray:
        pred = p[0] + p[1] * s
        r = np.where(floor, np.maximum(pred, 0.0), t - pred) / (NOISE * spread)
        prior = np.array([p[0] / (OFFSET_PRIOR_SD * spread), (p[1] - 1.0) / SCALE_PRIOR_SD])
        return np.concatenate([r, prior])

    fit = least_squares(residuals, np.array([0.0, 1.0]), method="trf", xtol=1e-10, ftol=1e-10)
    return ScaleMap(float(fit.x[0]), float(fit.x[1]), len(t))


def source_signed(model: SurrogateEnsemble, U: np.ndarray | Tensor, chunk: int = 65536) -> np.ndarray:
    """The source ensemble's signed value ``(n,)`` at unit-box ``U (n, d)``: the members' mean before the ReLU."""
    Ut = torch.as_tensor(np.asarray(U) if not isinstance(U, Tensor) else U)
    with torch.no_grad():
        parts = [model.signed(part.to(model.x_mean.dtype)).mean(0) for part in torch.split(Ut, chunk)]
    return torch.cat(parts).double().numpy() if parts else np.zeros(0)


def replay_rows(n_target: int, n_source: int) -> int:
    """How many source rows join the ensemble's and the generator's training at ``n_target`` results."""
    return round(min(n_source, REPLAY_CAP) * REPLAY_HALF / (REPLAY_HALF + max(0, n_target)))


@dataclass(frozen=True)
class SourcePrior:
    """The GP's prior mean: the mapped source model as a function of unit-box ``X (..., d)``."""

    model: SurrogateEnsemble
    map: ScaleMap

    def __call__(self, X: Tensor) -> Tensor:
        with torch.no_grad():
            s = self.model.signed(X.to(self.model.x_mean.dtype)).mean(0).to(X.dtype)
        return torch.clamp_min(self.map.offset + self.map.scale * s, 0.0)


@dataclass(frozen=True)
class TransferSource:
    """A loaded source: its designs ``U (n, d)`` in the shared unit box, its values ``y (n,)``,
    the ensemble trained on them, and that ensemble's signed values at ``U`` (computed once)."""

    label: str
    U: np.ndarray
    y: np.ndarray
    model: SurrogateEnsemble
    signed: np.ndarray

    @classmethod
    def of(cls, label: str, U: np.ndarray, y: np.ndarray, model: SurrogateEnsemble) -> TransferSource:
        return cls(label, U, y, model, source_signed(model, U))

    @property
    def rows(self) -> int:
        return len(self.y)

    def fit_map(self, U: np.ndarray, y: np.ndarray) -> ScaleMap:
        """`fit_scale_map` on the target's results ``U (n, d)``, ``y (n,)``."""
        return fit_scale_map(source_signed(self.model, U), y, float(np.std(self.y)))

    def prior(self, map: ScaleMap) -> SourcePrior:
        return SourcePrior(self.model, map)

    def replay(self, map: ScaleMap, n_target: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """`replay_rows` source designs labelled with the mapped source model: the first rows
        of one fixed permutation for ``seed``, so fewer rows are a subset of more."""
        order = np.random.default_rng([seed, 7919]).permutation(self.rows)[: replay_rows(n_target, self.rows)]
        return self.U[order], map(self.signed[order])

    def record(self, map: ScaleMap, n_target: int) -> dict[str, object]:
        """What ``metrics.json`` keeps: the source, its rows, the fitted map and the replay share."""
        replay = replay_rows(n_target, self.rows)
        share = replay / (replay + n_target) if replay + n_target else 0.0
        return {"source": self.label, "rows": self.rows, **map.record(), "replay": replay, "replay_share": share}
