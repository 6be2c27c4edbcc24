"""A Gaussian process that knows the material's symmetries: the acquisition's model.

Why a GP here: on the table benchmark (real VASP labels, 50 seeds, batches of 10) an
exact GP is the strongest small-data model, and making its kernel invariant under the
material's exact symmetry group (`agent.core.materials.Symmetry`) is worth more than any
other change measured: every observation also informs its symmetric images. The kernel
is a Matern-5/2 averaged over the group,

    k(x, x') = 1/|G| · Σ_{g ∈ G} m(x, g x'),

which is positive definite and invariant in both arguments when the length scales are
equal along each orbit of the group's coordinate permutations (they are tied here).
Beyond ``max_points`` observations the GP is fitted on the rows closest to the targets
(its cost grows with the cube of the rows), which keeps an iteration's overhead bounded.

A ``prior`` mean (a campaign's transfer source, `agent.models.transfer.SourcePrior`)
replaces the constant mean by that function plus a learned constant (`PriorMean`): the
kernel then models what the prior gets wrong, and the posterior falls back to the prior
only far from the data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from agent.core.materials.base import Symmetry

__all__ = ["InvariantMatern", "PriorMean", "fit_gp", "fit_marginal_likelihood", "symmetry_group"]


def symmetry_group(generators: Sequence[Symmetry], dim: int) -> list[Symmetry]:
    """Close ``generators`` under composition (the identity first)."""
    ident = Symmetry("identity", tuple(range(dim)))
    group = [ident]
    keys = {_key(ident, dim)}
    frontier = [ident]
    while frontier:
        nxt = []
        for g, h in itertools.product(frontier, generators):
            c = _compose(g, h, dim)
            if _key(c, dim) not in keys:
                keys.add(_key(c, dim))
                group.append(c)
                nxt.append(c)
        frontier = nxt
    return group


def _compose(g: Symmetry, h: Symmetry, dim: int) -> Symmetry:
    """The map ``u -> h(g(u))`` as one permutation plus flips."""
    basis = np.vstack([np.zeros(dim), np.eye(dim) * 0.25])
    out = h.apply(g.apply(basis))
    origin = out[0]
    perm, flip = [], []
    for j in range(dim):
        src = int(np.argmax(np.abs(out[1:, j] - origin[j])))
        perm.append(src)
        if origin[j] > 0.5:
            flip.append(j)
    return Symmetry(f"{g.name} then {h.name}", tuple(perm), tuple(flip))


def _key(g: Symmetry, dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(g.permutation), tuple(sorted(g.flip))


class InvariantMatern(Kernel):
    """Matern-5/2 averaged over a group of unit-box symmetries, length scales tied per orbit."""

    has_lengthscale = True

    def __init__(self, group: Sequence[Symmetry], dim: int, **kwargs: object) -> None:
        super().__init__(ard_num_dims=dim, **kwargs)
        self.group = list(group)
        parent = list(range(dim))  # union-find over coordinates a permutation links

        def find(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for g in self.group:
            for j, src in enumerate(g.permutation):
                parent[find(j)] = find(src)
        self.tie = [find(j) for j in range(dim)]
        self.perms = [list(g.permutation) for g in self.group]
        flips = torch.zeros(len(self.group), dim, dtype=torch.float64)
        for k, g in enumerate(self.group):
            flips[k, list(g.flip)] = 1.0
        self.register_buffer("flips", flips)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params: object) -> Tensor:
        ls = self.lengthscale[..., self.tie]
        a = x1 / ls
        total: Tensor | float = 0.0
        for perm, f in zip(self.perms, self.flips):
            f = f.to(x2)
            b = (x2[..., perm] * (1 - 2 * f) + f) / ls
            d = self.covar_dist(a, b, diag=diag, **params)
            total = total + (1 + math.sqrt(5) * d + 5.0 / 3.0 * d**2) * torch.exp(-math.sqrt(5) * d)
        assert isinstance(total, Tensor)
        return total / len(self.perms)


class PriorMean(ConstantMean):
    """A fixed prior ``f(X)`` (in the property's units) plus a learned constant, in the
    standardised units the GP works in: ``(f(X) - mean) / std`` of its `Standardize`."""

    def __init__(self, prior: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.prior = prior
        self.register_buffer("y_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("y_std", torch.ones((), dtype=torch.float64))

    def standardise_like(self, transform: Standardize) -> None:
        """Take the outcome transform's mean and spread (set when the model was built)."""
        self.y_mean = transform.means.reshape(()).detach().clone()
        self.y_std = transform.stdvs.reshape(()).detach().clone()

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + (self.prior(x) - self.y_mean) / self.y_std


def fit_gp(
    U: np.ndarray,
    y: np.ndarray,
    *,
    symmetries: Sequence[Symmetry] = (),
    targets: Sequence[float] = (),
    max_points: int = 500,
    seed: int = 0,
    prior: Callable[[Tensor], Tensor] | None = None,
) -> SingleTaskGP:
    """Fit an exact GP (float64, standardised outputs) on at most ``max_points`` rows.

    With more rows, each target keeps an equal share of the rows whose value lies closest
    to it (without targets: the most recent rows). ``prior``: a prior mean (`PriorMean`).
    """
    U = np.asarray(U, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = _subset(y, targets, max_points)
    X = torch.as_tensor(U[keep])
    Y = torch.as_tensor(y[keep]).unsqueeze(-1)
    dim = U.shape[1]
    base = (
        InvariantMatern(symmetry_group(symmetries, dim), dim) if symmetries else MaternKernel(nu=2.5, ard_num_dims=dim)
    )
    torch.manual_seed(seed)
    mean = PriorMean(prior) if prior is not None else None
    model = SingleTaskGP(X, Y, covar_module=ScaleKernel(base), mean_module=mean, outcome_transform=Standardize(1))
    if mean is not None:
        transform = model.outcome_transform
        assert isinstance(transform, Standardize)
        mean.standardise_like(transform)
    fit_marginal_likelihood(ExactMarginalLogLikelihood(model.likelihood, model))
    model.eval()
    return model


def fit_marginal_likelihood(mll: ExactMarginalLogLikelihood) -> None:
    """BoTorch's fit; when every one of its tries ends in an optimizer warning (L-BFGS
    "ABNORMAL" on one-hot blocks of a few dozen designs), the first try's fit is kept
    rather than the campaign stopped: a GP a step short of its optimum still ranks."""
    try:
        fit_gpytorch_mll(mll)
    except ModelFittingError:
        fit_gpytorch_mll(mll, warning_handler=lambda _w: True)


def _subset(y: np.ndarray, targets: Sequence[float], cap: int) -> np.ndarray:
    n = len(y)
    if n <= cap:
        return np.arange(n)
    if not targets:
        return np.arange(n - cap, n)
    chosen: set[int] = set()
    share = cap // len(targets)
    for t in targets:
        order = np.argsort(np.abs(y - t), kind="stable")
        chosen.update(int(i) for i in order[:share])
    return np.array(sorted(chosen))
