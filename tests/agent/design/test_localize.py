from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.core.errors import ConfigError
from agent.core.space import DesignSpace
from agent.design.localize import LocalizeConfig, downselect, localize, residual


def _abs_residual(model, U: np.ndarray, target: float, margin: float = 0.05) -> np.ndarray:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return residual(model, torch.as_tensor(U, dtype=torch.float32), target, margin).abs().numpy()


@pytest.mark.parametrize("target", [0.3, 0.8])
def test_localization_reduces_every_error_and_stays_in_box(small_ensemble, target: float) -> None:  # type: ignore[no-untyped-def]
    U0 = np.random.default_rng(1).random((400, 3))
    before = _abs_residual(small_ensemble, U0, target)
    res = localize(small_ensemble, U0, target, LocalizeConfig(tol=0.005))
    after = _abs_residual(small_ensemble, res.U, target)
    assert (after <= before + 1e-6).all(), "no sample may end worse than it started"
    assert (res.U >= 0).all() and (res.U <= 1).all()
    assert res.converged.mean() > 0.6
    assert (after[res.converged] <= 0.005 + 1e-6).all()
    np.testing.assert_allclose(after, res.residual, atol=1e-5)


def test_zero_target_is_one_sided(small_ensemble) -> None:  # type: ignore[no-untyped-def]
    U0 = np.random.default_rng(2).random((300, 3))
    res = localize(small_ensemble, U0, 0.0, LocalizeConfig(metal_margin=0.05))
    mean, _ = small_ensemble.predict(res.U[res.converged])
    assert res.converged.mean() > 0.9
    assert (mean < 0.01).all()
    already_metal = _abs_residual(small_ensemble, U0, 0.0) == 0
    np.testing.assert_allclose(res.U[already_metal], U0[already_metal], atol=1e-6, err_msg="metals stay put")


def test_result_does_not_depend_on_batch(small_ensemble) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    crowd = rng.random((10_000, 3))
    probe = crowd[:10]
    alone = localize(small_ensemble, probe, 0.6)
    with_many = localize(small_ensemble, crowd, 0.6)
    np.testing.assert_allclose(alone.U, with_many.U[:10], atol=1e-5)
    np.testing.assert_array_equal(alone.steps, with_many.steps[:10])


def test_samples_stop_individually(small_ensemble) -> None:  # type: ignore[no-untyped-def]
    U0 = np.random.default_rng(4).random((200, 3))
    res = localize(small_ensemble, U0, 0.5, LocalizeConfig(max_steps=30))
    assert res.steps.min() < res.steps.max(), "easy samples must stop before hard ones"


def test_downselect_filters_window_bounds_and_sigma() -> None:
    space = DesignSpace.box("toy", [("x", 0.0, 1.0, ""), ("y", 0.0, 2.0, "")])
    U = np.array([[0.5, 0.5], [0.5, 0.5], [1.5, 0.5], [0.5, 0.5]])
    mean = np.array([1.0, 1.3, 1.0, 1.05])
    std = np.array([0.01, 0.01, 0.01, 0.2])
    np.testing.assert_array_equal(downselect(space, U, mean, std, 1.0, 0.1), [True, False, False, True])
    np.testing.assert_array_equal(
        downselect(space, U, mean, std, 1.0, 0.1, max_sigma=0.05), [True, False, False, False]
    )
    # no window: only the design space (and a σ cap, when given) decide
    np.testing.assert_array_equal(downselect(space, U, mean, std, 1.0, None), [True, True, False, True])
    np.testing.assert_array_equal(downselect(space, U, mean, std, 1.0, None, 0.05), [True, True, False, False])
    with pytest.raises(ConfigError):
        downselect(space, U, mean, std, 1.0, 0.0)
