"""Invertible building blocks for normalising flows and INNs.

Every block maps ``x`` (n, dim) to ``(out, log_det)`` where ``log_det`` (n,) is
``log |det d out / d x|``. With ``rev=True`` the block applies its inverse and returns the
log-determinant of that inverse, so chaining forward and reverse sums to zero. An optional
condition ``c`` (n, cond_dim) is passed to every block; blocks that do not use it ignore it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from agent.core.errors import ConfigError

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "InvertibleSequence",
    "PermuteRandom",
    "SubnetConstructor",
    "mlp_subnet",
    "zero_last_linear",
]

SubnetConstructor = Callable[[int, int], nn.Module]


def zero_last_linear(module: nn.Module) -> None:
    """Zero the final linear layer so a coupling starts as the identity map."""
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ConfigError(f"subnet {type(module).__name__} has no nn.Linear layer to zero-initialise")
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()


def mlp(inp: int, hidden: int, layers: int, out: int | None) -> nn.Sequential:
    """``layers`` SiLU layers of width ``hidden``, then a linear map to ``out`` (none if ``None``)."""
    mods: list[nn.Module] = []
    width = inp
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    if out is not None:
        mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


def mlp_subnet(hidden: int, layers: int = 2) -> SubnetConstructor:
    """A constructor of ``layers`` hidden SiLU layers of width ``hidden``; last layer zeroed.

    SiLU rather than ReLU keeps the coupling smooth, which matters for sampling densities.
    """
    if hidden < 1 or layers < 1:
        raise ConfigError(f"mlp_subnet needs hidden >= 1 and layers >= 1, got {hidden}, {layers}")

    def build(in_features: int, out_features: int) -> nn.Module:
        net = mlp(in_features, hidden, layers, out_features)
        zero_last_linear(net)
        return net

    return build


class AffineCoupling(nn.Module):
    """GLOW-style two-sided affine coupling with soft-clamped log-scales.

    The input splits into halves ``x1`` (dim // 2) and ``x2``; ``x2`` is scaled and shifted
    by a subnet of ``[x1, c]``, then ``x1`` by a subnet of ``[x2', c]``. The tanh clamp
    bounds each log-scale to ``(-clamp, clamp)`` so one block can never blow up.
    """

    def __init__(self, dim: int, cond_dim: int, subnet_constructor: SubnetConstructor, clamp: float = 2.0) -> None:
        super().__init__()
        if dim < 2:
            raise ConfigError(f"AffineCoupling needs dim >= 2 to split, got {dim}")
        if cond_dim < 0 or clamp <= 0:
            raise ConfigError(f"AffineCoupling needs cond_dim >= 0 and clamp > 0, got {cond_dim}, {clamp}")
        self.dim, self.cond_dim, self.clamp = dim, cond_dim, float(clamp)
        self.d1 = dim // 2
        self.d2 = dim - self.d1
        self.net1 = subnet_constructor(self.d1 + cond_dim, 2 * self.d2)  # acts on x2
        self.net2 = subnet_constructor(self.d2 + cond_dim, 2 * self.d1)  # acts on x1

    def init_identity(self) -> None:
        zero_last_linear(self.net1)
        zero_last_linear(self.net2)

    def _scale_shift(self, net: nn.Module, x: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        h = net(x if c is None else torch.cat([x, c], dim=1))
        s, t = h.chunk(2, dim=1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: Tensor, c: Tensor | None = None, rev: bool = False) -> tuple[Tensor, Tensor]:
        if self.cond_dim and (c is None or c.shape[1] != self.cond_dim):
            raise ConfigError(f"AffineCoupling expects a condition of width {self.cond_dim}")
        if not self.cond_dim:
            c = None
        x1, x2 = x[:, : self.d1], x[:, self.d1 :]
        if not rev:
            s1, t1 = self._scale_shift(self.net1, x1, c)
            y2 = x2 * torch.exp(s1) + t1
            s2, t2 = self._scale_shift(self.net2, y2, c)
            y1 = x1 * torch.exp(s2) + t2
            return torch.cat([y1, y2], dim=1), s1.sum(dim=1) + s2.sum(dim=1)
        s2, t2 = self._scale_shift(self.net2, x2, c)
        a1 = (x1 - t2) * torch.exp(-s2)
        s1, t1 = self._scale_shift(self.net1, a1, c)
        a2 = (x2 - t1) * torch.exp(-s1)
        return torch.cat([a1, a2], dim=1), -(s1.sum(dim=1) + s2.sum(dim=1))


class PermuteRandom(nn.Module):
    """A fixed random permutation of the features, so couplings mix all dimensions."""

    perm: Tensor
    inverse: Tensor

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__()
        perm = torch.randperm(dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("perm", perm)
        self.register_buffer("inverse", torch.argsort(perm))

    def forward(self, x: Tensor, c: Tensor | None = None, rev: bool = False) -> tuple[Tensor, Tensor]:
        out = x[:, self.inverse] if rev else x[:, self.perm]
        return out, x.new_zeros(x.shape[0])


class ActNorm(nn.Module):
    """Learned per-feature scale and shift; starts as the identity.

    Inputs are standardised upstream, so the data-dependent initialisation of GLOW's
    ActNorm is unnecessary; the block only adds cheap per-dimension freedom.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def init_identity(self) -> None:
        with torch.no_grad():
            self.log_scale.zero_()
            self.bias.zero_()

    def forward(self, x: Tensor, c: Tensor | None = None, rev: bool = False) -> tuple[Tensor, Tensor]:
        ld = self.log_scale.sum().expand(x.shape[0])
        if not rev:
            return x * torch.exp(self.log_scale) + self.bias, ld
        return (x - self.bias) * torch.exp(-self.log_scale), -ld


class InvertibleSequence(nn.Module):
    """Blocks applied in order (forward) or in reverse order (``rev=True``)."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def init_identity(self) -> None:
        for block in self.blocks:
            init = getattr(block, "init_identity", None)
            if callable(init):
                init()

    def forward(self, x: Tensor, c: Tensor | None = None, rev: bool = False) -> tuple[Tensor, Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for block in reversed(self.blocks) if rev else self.blocks:
            x, ld = block(x, c, rev=rev)
            log_det = log_det + ld
        return x, log_det
