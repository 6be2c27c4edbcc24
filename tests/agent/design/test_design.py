from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.core.errors import ConfigError, TargetError
from agent.core.space import DesignSpace
from agent.design.funnel import DesignConfig, check_target, generate_candidates
from generators import TrainConfig, make_generator

SPACE = DesignSpace.box("toy3", [("p", 0.0, 1.0, ""), ("q", 0.0, 1.0, ""), ("r", 0.0, 1.0, "")])


@pytest.fixture(scope="module")
def toy_cinn(synthetic_data):  # type: ignore[no-untyped-def]
    U, y = synthetic_data
    gen = make_generator("cinn", 3)
    gen.fit(
        torch.as_tensor(U, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.float32),
        config=TrainConfig(epochs=8, seed=0),
    )
    return gen


def test_refined_candidates_are_on_target_in_box_and_confident(toy_cinn, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    cfg = DesignConfig(n_samples=1500, seed=1, max_sigma=0.1)
    res = generate_candidates(SPACE, toy_cinn, small_ensemble, 0.6, cfg)
    df = res.candidates
    assert res.counts["generated"] == 1500
    assert 0 < res.counts["final"] <= res.counts["converged"] <= res.counts["prefiltered"] <= 1500
    assert len(df) == res.counts["final"]
    assert (df["pred"] - 0.6).abs().max() <= 2 * cfg.localize.tol + 1e-9
    assert (df["pred_std"] <= 0.1).all()
    assert SPACE.valid_mask(df[SPACE.names].to_numpy()).all()
    assert set(res.seconds) >= {"generate", "downselect", "localize", "select", "total"}


def test_refinement_beats_raw_samples(toy_cinn, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    raw = generate_candidates(SPACE, toy_cinn, small_ensemble, 0.6, DesignConfig(n_samples=1000, refine=False))
    ref = generate_candidates(SPACE, toy_cinn, small_ensemble, 0.6, DesignConfig(n_samples=1000))
    assert len(raw.candidates) == 1000
    raw_err = (raw.candidates["pred"] - 0.6).abs().mean()
    ref_err = (ref.candidates["pred"] - 0.6).abs().mean()
    assert ref_err < raw_err / 5


def test_same_seed_same_candidates(toy_cinn, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    a = generate_candidates(SPACE, toy_cinn, small_ensemble, 0.4, DesignConfig(n_samples=500, seed=3))
    b = generate_candidates(SPACE, toy_cinn, small_ensemble, 0.4, DesignConfig(n_samples=500, seed=3))
    np.testing.assert_array_equal(a.U, b.U)


def test_targets_outside_the_data_are_refused(toy_cinn, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TargetError, match="outside the range"):
        generate_candidates(SPACE, toy_cinn, small_ensemble, 5.0, DesignConfig(n_samples=10))
    with pytest.raises(TargetError):
        check_target(-0.5, 0.0, 2.0)
    with pytest.raises(TargetError):
        check_target(float("nan"), 0.0, 2.0)
    with pytest.raises(ConfigError):
        DesignConfig(n_samples=0)
