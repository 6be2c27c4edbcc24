"""Down-selection and gradient localization of generated designs on the surrogate.

Localization moves each sample, independently, onto the level set ``f(u) = target`` of
the ensemble's mean signed gap with damped, projected Gauss-Newton steps in the unit
box::

    u <- P( u - r(u) * g / |g|^2 ),   r = f(u) - target,   g = grad_u r   (free coords only)

The step is the smallest move that zeroes the linearised residual, so a sample moves
only as far as it must (keeping the generator's diversity) and converges in a handful
of steps; coordinates pressed against a bound are frozen, so the projection ``P`` onto
the box never fights the step. Each sample has its own objective and stops on its own
once ``|r| <= tol``: no batch mean, so results do not depend on the batch. For a 0 eV
target the residual is one-sided, ``relu(f + margin)``: any cell predicted metallic by
``margin`` is on target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from agent.core.errors import ConfigError
from agent.core.space import DesignSpace
from agent.models.surrogate import SurrogateEnsemble

__all__ = ["LocalizeConfig", "LocalizeResult", "downselect", "localize", "residual"]


@dataclass
class LocalizeConfig:
    """``tol`` in the property's unit; ``max_step`` is a trust radius in the unit box."""

    tol: float = 0.005
    max_steps: int = 40
    max_step: float = 0.05
    metal_margin: float = 0.05
    chunk: int = 16384
    progress: bool = False

    def __post_init__(self) -> None:
        if self.tol <= 0 or self.max_step <= 0 or self.metal_margin < 0:
            raise ConfigError("LocalizeConfig: tol and max_step must be > 0, metal_margin >= 0")
        if self.max_steps < 0 or self.chunk < 1:
            raise ConfigError("LocalizeConfig: max_steps must be >= 0 and chunk >= 1")


@dataclass
class LocalizeResult:
    """Localized points ``U (n, d)``, final ``|residual| (n,)``, ``converged (n,)``, ``steps (n,)``."""

    U: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    steps: np.ndarray


def residual(model: SurrogateEnsemble, U: Tensor, target: float, metal_margin: float) -> Tensor:
    """Per-sample residual ``(n,)`` of the ensemble-mean signed gap against ``target``."""
    f = model.signed(U).mean(dim=0)
    if target <= 0.0:
        return torch.relu(f + metal_margin)
    return f - target


def localize(
    model: SurrogateEnsemble, U0: np.ndarray, target: float, config: LocalizeConfig | None = None
) -> LocalizeResult:
    """Move each row of ``U0 (n, d)`` (unit box) onto ``f = target``; see the module docstring."""
    cfg = config or LocalizeConfig()
    U0 = np.clip(np.asarray(U0, dtype=np.float32), 0.0, 1.0)
    n = len(U0)
    U = torch.from_numpy(U0.copy())
    res = torch.zeros(n)
    steps = torch.zeros(n, dtype=torch.int64)
    done = torch.zeros(n, dtype=torch.bool)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    bar = tqdm(total=n, desc="localize", disable=not cfg.progress, leave=False)
    try:
        for it in range(cfg.max_steps + 1):
            active = torch.nonzero(~done).squeeze(-1)
            if len(active) == 0:
                break
            for idx in torch.split(active, cfg.chunk):
                u = U[idx].clone().requires_grad_(True)
                r = residual(model, u, target, cfg.metal_margin)
                (g,) = torch.autograd.grad(r.sum(), u)
                r = r.detach()
                res[idx] = r.abs()
                hit = r.abs() <= cfg.tol
                stop = hit if it < cfg.max_steps else torch.ones_like(hit)
                done[idx] = stop
                bar.update(int(stop.sum()))
                move = ~stop
                if not move.any():
                    continue
                ui, gi, ri = u.detach()[move], g[move], r[move]
                direction = -ri[:, None] * gi
                frozen = ((ui <= 0.0) & (direction < 0)) | ((ui >= 1.0) & (direction > 0))
                gi = torch.where(frozen, torch.zeros_like(gi), gi)
                step = -ri[:, None] * gi / (gi.pow(2).sum(-1, keepdim=True) + 1e-12)
                norm = step.norm(dim=-1, keepdim=True)
                step = step * torch.clamp(cfg.max_step / (norm + 1e-12), max=1.0)
                moved = idx[move]
                U[moved] = torch.clamp(ui + step, 0.0, 1.0)
                steps[moved] += 1
    finally:
        bar.close()
        for p in model.parameters():
            p.requires_grad_(True)
    return LocalizeResult(
        U=U.numpy().astype(np.float64),
        residual=res.numpy().astype(np.float64),
        converged=(res <= cfg.tol).numpy(),
        steps=steps.numpy(),
    )


def downselect(
    space: DesignSpace,
    U: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    target: float,
    window: float | None,
    max_sigma: float | None = None,
) -> np.ndarray:
    """Boolean ``(n,)`` over ``U (n, d)``, ``mean (n,)``, ``std (n,)``: inside the design space
    (bounds and constraints), predicted within ``±window`` of ``target`` (``None``: any
    prediction) and, if ``max_sigma`` is set, with ``σ <= max_sigma``."""
    if window is not None and window <= 0:
        raise ConfigError(f"down-selection window must be > 0, got {window}")
    U = np.asarray(U, dtype=np.float64)
    keep = space.valid_mask(space.from_unit(U)) if len(U) else np.zeros(0, dtype=bool)
    if window is not None:
        keep &= np.abs(np.asarray(mean) - target) <= window
    if max_sigma is not None:
        keep &= np.asarray(std) <= max_sigma
    return keep
