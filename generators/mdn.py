"""Mixture density network (MDN): ``p(u | y)`` as a mixture of diagonal Gaussians.

A plain MLP maps the target to mixture weights, means and log-scales of ``K`` Gaussians
over the design point. It is the simplest honest baseline for the cINN: multi-modal, exact
likelihood, but only axis-aligned components.
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

__all__ = ["MDN", "MDNArch"]


@dataclass
class MDNArch:
    """``components`` Gaussians; log-sigmas are clamped so a component cannot collapse
    onto a single training row (which sends the likelihood to infinity). ``y_noise`` and
    ``u_noise`` are training jitter in standard units, as for the cINN: smooth conditioning
    and no components wasted on rows that share exact values."""

    components: int = 20
    hidden: int = 256
    layers: int = 3
    min_log_sigma: float = -5.0
    max_log_sigma: float = 1.5
    y_noise: float = 0.02
    u_noise: float = 0.03

    def __post_init__(self) -> None:
        for name in ("components", "hidden", "layers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"MDNArch.{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.min_log_sigma < self.max_log_sigma:
            raise ConfigError(
                f"MDNArch.min_log_sigma ({self.min_log_sigma}) must be below max_log_sigma ({self.max_log_sigma})"
            )
        for name in ("y_noise", "u_noise"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"MDNArch.{name} must be >= 0, got {getattr(self, name)!r}")


class MDN(TorchGenerator):
    """Mixture density network over standardised design points."""

    name = "mdn"
    arch_type = MDNArch
    default_epochs: ClassVar[int] = 150

    def __init__(self, dim: int, arch: MDNArch | None = None) -> None:
        arch = arch if arch is not None else MDNArch()
        super().__init__(dim, arch)
        self.arch: MDNArch = arch
        self.trunk = mlp(1, arch.hidden, arch.layers, None)
        k, d = arch.components, self.dim
        self.head = nn.Linear(arch.hidden, k + 2 * k * d)  # logits, means, log-sigmas

    def default_train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.default_epochs, batch_size=256, lr=1e-3)

    def mixture(self, y_std: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log-weights (n, K), means (n, K, d) and log-sigmas (n, K, d) for targets (n, 1)."""
        k, d = self.arch.components, self.dim
        h = self.head(self.trunk(y_std))
        log_w = torch.log_softmax(h[:, :k], dim=1)
        mu = h[:, k : k + k * d].reshape(-1, k, d)
        log_sigma = h[:, k + k * d :].reshape(-1, k, d).clamp(self.arch.min_log_sigma, self.arch.max_log_sigma)
        return log_w, mu, log_sigma

    def log_prob(self, u_std: Tensor, y_std: Tensor) -> Tensor:
        """Log-density (n,) of standardised points (n, d) given targets (n, 1)."""
        log_w, mu, log_sigma = self.mixture(y_std)
        diff = (u_std.unsqueeze(1) - mu) * torch.exp(-log_sigma)
        comp = -0.5 * (diff**2).sum(dim=2) - log_sigma.sum(dim=2) - 0.5 * self.dim * math.log(2 * math.pi)
        return torch.logsumexp(log_w + comp, dim=1)

    def _loss(self, u_std: Tensor, y_std: Tensor, gen: torch.Generator) -> Tensor:
        if self.arch.y_noise:
            y_std = y_std + self.arch.y_noise * torch.randn(y_std.shape, generator=gen)
        if self.arch.u_noise:
            u_std = u_std + self.arch.u_noise * torch.randn(u_std.shape, generator=gen)
        return -self.log_prob(u_std, y_std).mean()

    def _sample(self, y_std: Tensor, gen: torch.Generator) -> Tensor:
        log_w, mu, log_sigma = self.mixture(y_std)
        pick = torch.multinomial(log_w.exp(), 1, generator=gen)  # (n, 1)
        idx = pick.unsqueeze(2).expand(-1, 1, self.dim)
        mu_k = mu.gather(1, idx).squeeze(1)
        sigma_k = log_sigma.gather(1, idx).squeeze(1).exp()
        return mu_k + sigma_k * torch.randn(mu_k.shape, generator=gen)
