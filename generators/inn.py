"""Unconditional INN in the style of Ardizzone et al. (ICLR 2019).

One bijection of width ``D`` maps the zero-padded design point ``[u, 0]`` to
``[y, z, 0]``: the target, a latent and padding. It is trained from both ends with
supervised and distribution-matching (MMD) losses rather than exact likelihood; inverse
design then runs ``[target, z ~ N(0, I), 0]`` backwards. It is the historical baseline the
cINN improves on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from agent.core.errors import ConfigError
from generators.base import TorchGenerator, TrainConfig
from generators.blocks import AffineCoupling, InvertibleSequence, PermuteRandom, mlp_subnet

__all__ = ["INN", "INNArch", "mmd"]


def mmd(a: Tensor, b: Tensor, widths: Tensor) -> Tensor:
    """Biased MMD^2 between samples ``a`` (n, m) and ``b`` (k, m).

    Inverse multiquadratic kernels ``w / (w + |x - x'|^2 / m)`` summed over ``widths``:
    their heavy tails keep gradients alive when the two clouds are far apart.
    """
    m = a.shape[1]

    def kernel(x: Tensor, y: Tensor) -> Tensor:
        d2 = torch.cdist(x, y).pow(2).unsqueeze(-1) / m
        return (widths / (widths + d2)).sum(dim=-1)

    return kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean()


@dataclass
class INNArch:
    """Width ``total_dim`` must hold both ``[u]`` (d) and ``[y, z]`` (1 + latent).

    ``w_*`` weight the four loss terms: target regression (y), forward latent MMD (z),
    backward data MMD (x, ramped in over the first ``rev_warmup`` of training, as in the
    paper) and the padding penalties. MMD kernel widths are ``kernels`` values spaced
    geometrically between ``kernel_min`` and ``kernel_max`` (per-dimension squared units).
    """

    total_dim: int = 16
    latent: int = 0
    blocks: int = 8
    hidden: int = 192
    subnet_layers: int = 2
    clamp: float = 2.0
    w_y: float = 5.0
    w_z: float = 50.0
    w_x: float = 50.0
    w_pad: float = 5.0
    rev_warmup: float = 0.2
    y_noise: float = 0.05
    pad_noise: float = 0.01
    kernel_min: float = 0.05
    kernel_max: float = 2.0
    kernels: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("total_dim", "blocks", "hidden", "subnet_layers", "kernels"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"INNArch.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.latent < 0:
            raise ConfigError(f"INNArch.latent must be >= 0 (0 = design dim), got {self.latent!r}")
        for name in ("w_y", "w_z", "w_x", "w_pad", "y_noise", "pad_noise"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"INNArch.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.kernel_min <= self.kernel_max:
            raise ConfigError(f"INNArch needs 0 < kernel_min <= kernel_max, got {self.kernel_min}, {self.kernel_max}")
        if not (math.isfinite(self.clamp) and self.clamp > 0):
            raise ConfigError(f"INNArch.clamp must be a positive number, got {self.clamp!r}")
        if not 0 <= self.rev_warmup < 1:
            raise ConfigError(f"INNArch.rev_warmup must lie in [0, 1), got {self.rev_warmup!r}")


class INN(TorchGenerator):
    """Padded INN ``[u, 0] <-> [y, z, 0]`` trained with MSE + MMD losses."""

    name = "inn"
    arch_type = INNArch
    default_epochs: ClassVar[int] = 100

    widths: Tensor

    def __init__(self, dim: int, arch: INNArch | None = None) -> None:
        arch = arch if arch is not None else INNArch()
        super().__init__(dim, arch)
        self.arch: INNArch = arch
        self.latent = arch.latent or self.dim
        if arch.total_dim < max(self.dim, 1 + self.latent, 2):
            raise ConfigError(
                f"INNArch.total_dim={arch.total_dim} cannot hold the design point ({self.dim}) "
                f"and [y, z] ({1 + self.latent}); raise total_dim"
            )
        subnet = mlp_subnet(arch.hidden, arch.subnet_layers)
        blocks: list[nn.Module] = []
        for i in range(arch.blocks):
            blocks.append(AffineCoupling(arch.total_dim, 0, subnet, clamp=arch.clamp))
            blocks.append(PermuteRandom(arch.total_dim, seed=arch.seed * 1000 + i))
        self.flow = InvertibleSequence(blocks)
        widths = torch.logspace(math.log10(arch.kernel_min), math.log10(arch.kernel_max), arch.kernels)
        self.register_buffer("widths", widths, persistent=False)

    def default_train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.default_epochs, batch_size=256, lr=1e-3, weight_decay=1e-5)

    def predict(self, u_std: Tensor) -> Tensor:
        """Forward direction: standardised target (n, 1) predicted from points (n, d)."""
        x = torch.cat([u_std, u_std.new_zeros(u_std.shape[0], self.arch.total_dim - self.dim)], dim=1)
        out, _ = self.flow(x)
        return out[:, :1]

    def _loss(self, u_std: Tensor, y_std: Tensor, gen: torch.Generator) -> Tensor:
        a, n, d, lat = self.arch, u_std.shape[0], self.dim, self.latent
        pad_x = a.total_dim - d
        pad_y = a.total_dim - 1 - lat
        x = torch.cat([u_std, a.pad_noise * torch.randn((n, pad_x), generator=gen)], dim=1)
        y = y_std + a.y_noise * torch.randn(y_std.shape, generator=gen)

        out, _ = self.flow(x)
        y_pred, z, out_pad = out[:, :1], out[:, 1 : 1 + lat], out[:, 1 + lat :]
        loss_y = ((y_pred - y) ** 2).mean()
        prior = torch.randn((n, lat), generator=gen)
        loss_z = mmd(torch.cat([y_pred.detach(), z], dim=1), torch.cat([y, prior], dim=1), self.widths)
        loss_pad = (out_pad**2).mean() if pad_y else out.new_zeros(())

        back_in = torch.cat(
            [y, torch.randn((n, lat), generator=gen), a.pad_noise * torch.randn((n, pad_y), generator=gen)], dim=1
        )
        x_rev, _ = self.flow(back_in, rev=True)
        loss_x = mmd(x_rev[:, :d], u_std, self.widths)
        if pad_x:
            loss_pad = loss_pad + (x_rev[:, d:] ** 2).mean()
        ramp = min(1.0, self._progress / a.rev_warmup) if a.rev_warmup > 0 else 1.0
        return a.w_y * loss_y + a.w_z * loss_z + ramp * a.w_x * loss_x + a.w_pad * loss_pad

    def _sample(self, y_std: Tensor, gen: torch.Generator) -> Tensor:
        n, lat = y_std.shape[0], self.latent
        pad = y_std.new_zeros((n, self.arch.total_dim - 1 - lat))
        back_in = torch.cat([y_std, torch.randn((n, lat), generator=gen), pad], dim=1)
        x_rev, _ = self.flow(back_in, rev=True)
        return x_rev[:, : self.dim]
