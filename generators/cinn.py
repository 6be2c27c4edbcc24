"""Conditional invertible network (cINN): an exact-likelihood flow for ``p(u | y)``.

Standardised design points ``u`` (n, d) map to a latent ``z ~ N(0, I_d)`` through affine
couplings that all see an embedding of the target ``y``. Training maximises the exact
likelihood; sampling draws ``z`` and runs the flow backwards with the target as condition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from agent.core.errors import ConfigError
from generators.base import TorchGenerator, TrainConfig
from generators.blocks import ActNorm, AffineCoupling, InvertibleSequence, PermuteRandom, mlp_subnet

__all__ = ["CINN", "CINNArch"]


@dataclass
class CINNArch:
    """Architecture and regularisation of the cINN.

    ``y_noise`` and ``u_noise`` are Gaussian jitter (in standard units) added during
    training: the first makes the condition smooth between the discrete training targets,
    the second dequantises rows that share exact values (e.g. unstrained angles), which
    would otherwise let the likelihood diverge on a measure-zero set. ``temperature``
    scales the latent at sampling time: 1.0 is the learned density; the default 0.8 keeps
    samples nearer its high-density core, trading some diversity for hitting the target.
    ``box_logit`` learns in logit coordinates of the box widened by ``box_margin`` per side,
    so samples stay near the box (a Gaussian-based flow cannot represent hard edges); it is
    off by default because it pulls samples away from targets that live at the box edges.
    """

    blocks: int = 8
    hidden: int = 128
    subnet_layers: int = 2
    cond_features: int = 32
    cond_hidden: int = 64
    clamp: float = 2.0
    actnorm: bool = True
    y_noise: float = 0.05
    u_noise: float = 0.03
    temperature: float = 0.8
    box_logit: bool = False
    box_margin: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("blocks", "hidden", "subnet_layers", "cond_hidden"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"CINNArch.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.cond_features < 0:
            raise ConfigError(f"CINNArch.cond_features must be >= 0, got {self.cond_features!r}")
        for name in ("y_noise", "u_noise"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"CINNArch.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.box_margin < 1:
            raise ConfigError(f"CINNArch.box_margin must lie in (0, 1), got {self.box_margin!r}")
        for name in ("clamp", "temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"CINNArch.{name} must be a positive number, got {value!r}")


class CINN(TorchGenerator):
    """Conditional INN; the default model of the design loop."""

    name = "cinn"
    arch_type = CINNArch
    default_epochs: ClassVar[int] = 200

    def __init__(self, dim: int, arch: CINNArch | None = None) -> None:
        arch = arch if arch is not None else CINNArch()
        super().__init__(dim, arch)
        if self.dim < 2:
            raise ConfigError(f"the cINN needs at least 2 design dimensions to couple, got {self.dim}")
        self.arch: CINNArch = arch
        if arch.cond_features:
            self.embed: nn.Module = nn.Sequential(
                nn.Linear(1, arch.cond_hidden), nn.SiLU(), nn.Linear(arch.cond_hidden, arch.cond_features)
            )
        else:
            self.embed = nn.Identity()
        cond_dim = 1 + arch.cond_features
        subnet = mlp_subnet(arch.hidden, arch.subnet_layers)
        blocks: list[nn.Module] = []
        for i in range(arch.blocks):
            if arch.actnorm:
                blocks.append(ActNorm(self.dim))
            blocks.append(AffineCoupling(self.dim, cond_dim, subnet, clamp=arch.clamp))
            blocks.append(PermuteRandom(self.dim, seed=arch.seed * 1000 + i))
        self.flow = InvertibleSequence(blocks)

    def default_train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.default_epochs, batch_size=256, lr=2e-3, weight_decay=1e-5)

    def _to_model(self, u: Tensor) -> Tensor:
        if not self.arch.box_logit:
            return u
        m = self.arch.box_margin
        p = ((u + m) / (1 + 2 * m)).clamp(1e-4, 1 - 1e-4)  # rows beyond the margin are pulled in
        return torch.log(p) - torch.log1p(-p)

    def _from_model(self, v: Tensor) -> Tensor:
        if not self.arch.box_logit:
            return v
        m = self.arch.box_margin
        return torch.sigmoid(v) * (1 + 2 * m) - m

    def _condition(self, y_std: Tensor) -> Tensor:
        """(n, 1) standardised targets -> (n, 1 + cond_features) condition."""
        if not self.arch.cond_features:
            return y_std
        return torch.cat([y_std, self.embed(y_std)], dim=1)

    def log_prob(self, u_std: Tensor, y_std: Tensor) -> Tensor:
        """Log-density (n,) of standardised points (n, d) given standardised targets (n, 1)."""
        z, log_det = self.flow(u_std, self._condition(y_std))
        return -0.5 * (z**2).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi) + log_det

    def _loss(self, u_std: Tensor, y_std: Tensor, gen: torch.Generator) -> Tensor:
        if self.arch.y_noise:
            y_std = y_std + self.arch.y_noise * torch.randn(y_std.shape, generator=gen)
        if self.arch.u_noise:
            u_std = u_std + self.arch.u_noise * torch.randn(u_std.shape, generator=gen)
        z, log_det = self.flow(u_std, self._condition(y_std))
        return (0.5 * (z**2).sum(dim=1) - log_det).mean()

    def _sample(self, y_std: Tensor, gen: torch.Generator) -> Tensor:
        z = self.arch.temperature * torch.randn((y_std.shape[0], self.dim), generator=gen)
        u_std, _ = self.flow(z, self._condition(y_std), rev=True)
        return u_std
