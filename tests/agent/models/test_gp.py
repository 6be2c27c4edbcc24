"""The symmetry-aware GP: the group closes, the posterior is invariant, the cap keeps rows near targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.core.materials import Symmetry, get_material
from agent.models.gp import InvariantMatern, _subset, fit_gp, symmetry_group


def test_mos2_group_has_four_elements_and_each_preserves_the_box() -> None:
    mat = get_material("mos2")
    group = symmetry_group(mat.symmetries, 7)
    assert len(group) == 4
    assert {(g.permutation, tuple(sorted(g.flip))) for g in group} == {
        ((0, 1, 2, 3, 4, 5, 6), ()),
        ((1, 0, 2, 4, 3, 5, 6), ()),
        ((0, 1, 2, 3, 4, 5, 6), (3, 4)),
        ((1, 0, 2, 4, 3, 5, 6), (3, 4)),
    }
    X = mat.dataset().X[:500]  # type: ignore[misc]
    for g in group:  # the images of real cells are valid cells of the same space
        image = mat.space.from_unit(g.apply(mat.space.to_unit(X)))
        assert mat.space.valid_mask(image).all()


def test_group_closure_of_a_rotation() -> None:
    cycle = Symmetry("cycle", (1, 2, 0))
    assert len(symmetry_group([cycle], 3)) == 3
    assert len(symmetry_group([cycle, Symmetry("flip", (0, 1, 2), (0, 1, 2))], 3)) == 6


def test_posterior_is_invariant_and_not_for_a_plain_gp() -> None:
    rng = np.random.default_rng(0)
    U = rng.random((80, 7))
    y = np.sin(3 * U[:, 0]) + 0.5 * U[:, 3] + U[:, 6]  # not symmetric itself
    sym = get_material("mos2").symmetries
    C = rng.random((20, 7))
    swapped = sym[0].apply(C)
    gp = fit_gp(U, y, symmetries=sym)
    plain = fit_gp(U, y)
    with torch.no_grad():
        a = gp.posterior(torch.as_tensor(C)).mean
        b = gp.posterior(torch.as_tensor(swapped)).mean
        c = plain.posterior(torch.as_tensor(C)).mean
        d = plain.posterior(torch.as_tensor(swapped)).mean
    torch.testing.assert_close(a, b, atol=1e-8, rtol=0)
    assert (c - d).abs().max() > 1e-3
    assert isinstance(gp.covar_module.base_kernel, InvariantMatern)


def test_kernel_is_positive_semidefinite() -> None:
    k = InvariantMatern(symmetry_group(get_material("mos2").symmetries, 7), 7)
    X = torch.as_tensor(np.random.default_rng(1).random((60, 7)))
    K = k(X, X).to_dense().detach()
    assert torch.linalg.eigvalsh(K).min() > -1e-8


@pytest.mark.parametrize(("targets", "expect"), [((), "recent"), ((0.0, 1.0), "near")])
def test_cap_keeps_recent_rows_or_rows_near_each_target(targets: tuple[float, ...], expect: str) -> None:
    y = np.linspace(0.0, 2.0, 101)
    keep = _subset(y, targets, 20)
    if expect == "recent":
        assert keep.tolist() == list(range(81, 101))
    else:
        assert len(keep) == 20
        assert set(keep) >= set(range(0, 10))  # the ten closest to 0
        near_one = [i for i in keep if i >= 10]
        assert len(near_one) == 10 and all(abs(y[i] - 1.0) <= 0.1 + 1e-9 for i in near_one)
    assert _subset(y, targets, 500).tolist() == list(range(101))


def test_a_fit_whose_every_try_warns_keeps_the_first_try(monkeypatch: pytest.MonkeyPatch) -> None:
    """BoTorch gives up when every restart ends in an optimizer warning (seen on one-hot
    recipes); the campaign keeps the first try's fit instead of stopping."""
    from botorch.exceptions.errors import ModelFittingError

    from agent.models import gp as gp_module

    calls: list[dict[str, object]] = []
    real = gp_module.fit_gpytorch_mll

    def flaky(mll: object, **kwargs: object) -> object:
        calls.append(kwargs)
        if "warning_handler" not in kwargs:
            raise ModelFittingError("All attempts to fit the model have failed.")
        return real(mll, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gp_module, "fit_gpytorch_mll", flaky)
    rng = np.random.default_rng(0)
    U = rng.random((20, 3))
    model = gp_module.fit_gp(U, U.sum(1))
    assert len(calls) == 2 and "warning_handler" in calls[1]
    assert model.posterior(torch.as_tensor(U[:2])).mean.shape == (2, 1)
