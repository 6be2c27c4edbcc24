"""Invertible blocks: exact inverses and log-determinants that match autograd Jacobians."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from agent.core.errors import ConfigError
from generators.blocks import ActNorm, AffineCoupling, InvertibleSequence, PermuteRandom, mlp_subnet


def _randomise(block: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter away from the identity initialisation, in float64."""
    block = block.double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return block.eval()


def _coupling(dim: int, cond: int) -> nn.Module:
    return AffineCoupling(dim, cond, mlp_subnet(16, 2), clamp=2.0)


# (name, block factory, dim, cond_dim)
CASES: list[tuple[str, Callable[[], nn.Module], int, int]] = [
    ("coupling_cond", lambda: _coupling(5, 3), 5, 3),
    ("coupling_nocond", lambda: _coupling(4, 0), 4, 0),
    ("coupling_dim2", lambda: _coupling(2, 1), 2, 1),
    ("permute", lambda: PermuteRandom(5, seed=3), 5, 0),
    ("actnorm", lambda: ActNorm(4), 4, 0),
    (
        "sequence",
        lambda: InvertibleSequence([ActNorm(5), _coupling(5, 2), PermuteRandom(5, 1), _coupling(5, 2)]),
        5,
        2,
    ),
]


def _inputs(dim: int, cond: int, n: int = 7) -> tuple[Tensor, Tensor | None]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((n, dim), generator=gen, dtype=torch.float64)
    c = torch.randn((n, cond), generator=gen, dtype=torch.float64) if cond else None
    return x, c


@pytest.mark.parametrize(("name", "factory", "dim", "cond"), CASES, ids=[c[0] for c in CASES])
def test_round_trip_and_log_det_cancel(name: str, factory: Callable[[], nn.Module], dim: int, cond: int) -> None:
    block = _randomise(factory())
    x, c = _inputs(dim, cond)
    z, ld_fwd = block(x, c)
    x_back, ld_rev = block(z, c, rev=True)
    assert z.shape == x.shape and ld_fwd.shape == (x.shape[0],)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ld_fwd + ld_rev, torch.zeros_like(ld_fwd), atol=1e-10, rtol=0)
    if name != "permute":
        assert not torch.allclose(z, x), "randomised block should not be the identity"


@pytest.mark.parametrize(("name", "factory", "dim", "cond"), CASES, ids=[c[0] for c in CASES])
def test_log_det_matches_autograd_jacobian(name: str, factory: Callable[[], nn.Module], dim: int, cond: int) -> None:
    block = _randomise(factory(), seed=2)
    x, c = _inputs(dim, cond, n=3)
    _, ld = block(x, c)
    _, ld_rev = block(x, c, rev=True)
    for i in range(x.shape[0]):
        ci = None if c is None else c[i : i + 1]

        def fwd(v: Tensor, ci: Tensor | None = ci) -> Tensor:
            return block(v.unsqueeze(0), ci)[0].squeeze(0)

        def rev(v: Tensor, ci: Tensor | None = ci) -> Tensor:
            return block(v.unsqueeze(0), ci, rev=True)[0].squeeze(0)

        jac = torch.autograd.functional.jacobian(fwd, x[i])
        jac_rev = torch.autograd.functional.jacobian(rev, x[i])
        assert jac.shape == (dim, dim)
        torch.testing.assert_close(ld[i], torch.linalg.slogdet(jac)[1], atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(ld_rev[i], torch.linalg.slogdet(jac_rev)[1], atol=1e-9, rtol=1e-9)


def test_fresh_coupling_is_identity() -> None:
    block = _coupling(6, 2)
    x, c = torch.randn(5, 6), torch.randn(5, 2)
    z, ld = block(x, c)
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(ld, torch.zeros(5))


def test_log_scales_are_clamped() -> None:
    block = _randomise(_coupling(4, 0))
    with torch.no_grad():
        for p in block.parameters():
            p.mul_(100.0)
    _, ld = block(torch.randn(9, 4, dtype=torch.float64))
    assert bool((ld.abs() <= 2.0 * 4 + 1e-9).all()), "each log-scale is bounded by the clamp"


def test_coupling_checks_its_condition() -> None:
    block = _coupling(4, 3)
    with pytest.raises(ConfigError, match="condition of width 3"):
        block(torch.randn(2, 4))
    with pytest.raises(ConfigError, match="condition of width 3"):
        block(torch.randn(2, 4), torch.randn(2, 2))


def test_bad_block_sizes() -> None:
    with pytest.raises(ConfigError, match="dim >= 2"):
        _coupling(1, 0)
    with pytest.raises(ConfigError):
        mlp_subnet(0, 2)


def test_permutation_is_seeded() -> None:
    a, b, other = PermuteRandom(10, seed=4), PermuteRandom(10, seed=4), PermuteRandom(10, seed=5)
    assert torch.equal(a.perm, b.perm)
    assert not torch.equal(a.perm, other.perm)
    assert sorted(a.perm.tolist()) == list(range(10))
