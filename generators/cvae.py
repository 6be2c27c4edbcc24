"""Conditional variational autoencoder (CVAE) baseline for ``p(u | y)``.

The encoder maps ``(u, y)`` to a Gaussian posterior over a latent ``z``; the decoder maps
``(z, y)`` back to ``u``. Sampling decodes prior draws ``z ~ N(0, I)`` with the target as
condition. Unlike the flows its likelihood is only a bound, which is why it is a baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from agent.core.errors import ConfigError
from generators.base import TorchGenerator, TrainConfig
from generators.blocks import mlp

__all__ = ["CVAE", "CVAEArch"]


@dataclass
class CVAEArch:
    """``latent`` 0 means "as many latent dimensions as design dimensions".

    The KL weight ramps linearly from 0 to ``beta`` over the first ``kl_warmup`` fraction of
    each fit, so the decoder learns to use ``z`` before the prior pulls it shut
    (posterior collapse). ``beta`` below 1 keeps the latent informative: with the full KL
    weight the decoder mostly ignores ``z`` and its means average over the modes of
    ``p(u | y)``. The decoder variance is one learned scalar per dimension.
    """

    latent: int = 0
    hidden: int = 256
    layers: int = 3
    beta: float = 0.3
    kl_warmup: float = 0.3
    y_noise: float = 0.02

    def __post_init__(self) -> None:
        for name in ("hidden", "layers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"CVAEArch.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.latent < 0:
            raise ConfigError(f"CVAEArch.latent must be >= 0 (0 = design dim), got {self.latent!r}")
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"CVAEArch.beta must be a positive number, got {self.beta!r}")
        if not 0 <= self.kl_warmup < 1:
            raise ConfigError(f"CVAEArch.kl_warmup must lie in [0, 1), got {self.kl_warmup!r}")
        if not self.y_noise >= 0:
            raise ConfigError(f"CVAEArch.y_noise must be >= 0, got {self.y_noise!r}")


class CVAE(TorchGenerator):
    """Conditional VAE with a Gaussian decoder of learned per-dimension variance."""

    name = "cvae"
    arch_type = CVAEArch
    default_epochs: ClassVar[int] = 150

    def __init__(self, dim: int, arch: CVAEArch | None = None) -> None:
        arch = arch if arch is not None else CVAEArch()
        super().__init__(dim, arch)
        self.arch: CVAEArch = arch
        self.latent = arch.latent or self.dim
        self.encoder = mlp(self.dim + 1, arch.hidden, arch.layers, 2 * self.latent)
        self.decoder = mlp(self.latent + 1, arch.hidden, arch.layers, self.dim)
        self.log_var = nn.Parameter(torch.zeros(self.dim))

    def default_train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.default_epochs, batch_size=256, lr=1e-3)

    def init_identity(self) -> None:
        """Start the decoder variance at the data variance (1 in standard units)."""
        with torch.no_grad():
            self.log_var.zero_()

    def encode(self, u_std: Tensor, y_std: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance (n, latent) for points (n, d) and targets (n, 1)."""
        mu, log_var = self.encoder(torch.cat([u_std, y_std], dim=1)).chunk(2, dim=1)
        return mu, log_var.clamp(-12.0, 6.0)

    def decode(self, z: Tensor, y_std: Tensor) -> Tensor:
        """Decoder mean (n, d) for latents (n, latent) and targets (n, 1)."""
        return self.decoder(torch.cat([z, y_std], dim=1))

    def _loss(self, u_std: Tensor, y_std: Tensor, gen: torch.Generator) -> Tensor:
        if self.arch.y_noise:
            y_std = y_std + self.arch.y_noise * torch.randn(y_std.shape, generator=gen)
        mu, log_var = self.encode(u_std, y_std)
        z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=gen)
        recon = self.decode(z, y_std)
        log_var_x = self.log_var.clamp(-10.0, 4.0)
        nll = 0.5 * (((u_std - recon) ** 2) * torch.exp(-log_var_x) + log_var_x).sum(dim=1)
        kl = 0.5 * (mu**2 + log_var.exp() - 1.0 - log_var).sum(dim=1)
        warm = self.arch.kl_warmup
        weight = self.arch.beta * (min(1.0, self._progress / warm) if warm > 0 else 1.0)
        return (nll + weight * kl).mean()

    def _sample(self, y_std: Tensor, gen: torch.Generator) -> Tensor:
        """Decoder means of prior draws: the learned per-dimension noise is isotropic
        reconstruction error, not design structure, so it is left out."""
        z = torch.randn((y_std.shape[0], self.latent), generator=gen)
        return self.decode(z, y_std)
