"""The one candidate funnel (`agent.design.funnel`) under the settings of each of its users."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from agent.core.errors import ConfigError, TargetError
from agent.core.space import DesignSpace
from agent.design.funnel import DESIGN, FunnelConfig, check_target, design, funnel, propose_candidates
from agent.design.localize import LocalizeConfig
from generators import TrainConfig, make_generator

SPACE = DesignSpace.box("toy3", [("p", 0.0, 1.0, ""), ("q", 0.0, 1.0, ""), ("r", 0.0, 1.0, "")])
# the loop's shape of the funnel (`agent.campaign.plan.LOOP_FUNNEL`), sized for a test
LOOPLIKE = FunnelConfig(
    n_samples=300, prefilter_window=None, localize=LocalizeConfig(max_steps=15), converged_only=False, max_sigma=None
)


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


class Stages:
    """A stage runner that records the stages it ran, in order."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        self.names.append(name)
        return fn()


def test_refined_candidates_are_on_target_in_box_and_confident(toy_cinn, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(DESIGN, n_samples=1500, max_sigma=0.1)
    stages = Stages()
    res = design(SPACE, toy_cinn, small_ensemble, 0.6, cfg, seed=1, stage=stages)
    df = res.frame(SPACE)
    assert res.counts["generated"] == 1500
    assert 0 < res.counts["final"] <= res.counts["converged"] <= res.counts["prefiltered"] <= 1500
    assert len(df) == len(res.U) == res.counts["final"]
    assert (df["pred"] - 0.6).abs().max() <= 2 * cfg.localize.tol + 1e-9  # type: ignore[union-attr]
    assert (df["pred_std"] <= 0.1).all()
    assert SPACE.valid_mask(df[SPACE.names].to_numpy()).all()
    assert stages.names == ["sample", "downselect", "localize", "select"]


def test_refinement_beats_raw_samples(toy_cinn, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    raw = design(SPACE, toy_cinn, small_ensemble, 0.6, replace(DESIGN, n_samples=1000, raw=True))
    ref = design(SPACE, toy_cinn, small_ensemble, 0.6, replace(DESIGN, n_samples=1000))
    assert len(raw.U) == 1000 and raw.counts == {"generated": 1000, "final": 1000}
    raw_err = np.abs(raw.frame(SPACE)["pred"] - 0.6).mean()
    ref_err = np.abs(ref.frame(SPACE)["pred"] - 0.6).mean()
    assert ref_err < raw_err / 5


def test_same_seed_same_candidates(toy_cinn, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(DESIGN, n_samples=500)
    a = design(SPACE, toy_cinn, small_ensemble, 0.4, cfg, seed=3)
    b = design(SPACE, toy_cinn, small_ensemble, 0.4, cfg, seed=3)
    other = design(SPACE, toy_cinn, small_ensemble, 0.4, cfg, seed=4)
    np.testing.assert_array_equal(a.U, b.U)
    assert a.U.shape != other.U.shape or not np.array_equal(a.U, other.U)


def test_targets_outside_the_data_are_refused(toy_cinn, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TargetError, match="outside the range"):
        design(SPACE, toy_cinn, small_ensemble, 5.0, replace(DESIGN, n_samples=10))
    with pytest.raises(TargetError):
        check_target(-0.5, 0.0, 2.0)
    with pytest.raises(TargetError):
        check_target(float("nan"), 0.0, 2.0)
    for bad in ({"n_samples": 0}, {"prefilter_window": 0.0}, {"max_sigma": -1.0}, {"uniform": -1}):
        with pytest.raises(ConfigError):
            FunnelConfig(**bad)


def test_each_stage_is_a_setting(small_ensemble) -> None:  # type: ignore[no-untyped-def]
    """Down-selection, localization, the convergence filter and the σ cap each switch off alone."""
    U = np.random.default_rng(5).random((400, 3))
    full = funnel(SPACE, small_ensemble, U, 0.6, DESIGN)
    assert set(full.counts) == {"generated", "prefiltered", "converged", "invalid", "final"}

    no_prefilter = funnel(SPACE, small_ensemble, U, 0.6, replace(DESIGN, prefilter_window=None))
    assert "prefiltered" not in no_prefilter.counts and no_prefilter.counts["final"] >= full.counts["final"]

    unmoved = funnel(SPACE, small_ensemble, U, 0.6, replace(DESIGN, prefilter_window=0.1, localize=None))
    assert "converged" not in unmoved.counts
    assert all((np.abs(U - u).max(axis=1) == 0).any() for u in unmoved.U), "without localization designs stay put"
    assert (np.abs(unmoved.mean - 0.6) <= 0.1).all()  # type: ignore[operator]

    every = funnel(SPACE, small_ensemble, U, 0.6, replace(LOOPLIKE, localize=LocalizeConfig(max_steps=1)))
    assert every.counts["final"] + every.counts["invalid"] == len(U), "no convergence filter: only invalid go"
    assert 0 < every.counts["converged"] < every.counts["final"]

    assert every.std is not None
    cap = float(np.median(every.std))
    capped = funnel(SPACE, small_ensemble, U, 0.6, replace(LOOPLIKE, max_sigma=cap))
    assert capped.std is not None and (capped.std <= cap).all() and 0 < len(capped.U) < len(every.U)


def test_several_targets_and_uniform_designs(small_ensemble) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(6)
    draws = [rng.random((120, 3)), np.zeros((0, 3)), rng.random((80, 3))]
    cfg = replace(LOOPLIKE, uniform=50)
    got = propose_candidates(SPACE, small_ensemble, draws, [0.3, 0.9, 0.7], cfg, np.random.default_rng(0))
    c = got.counts
    assert [c["generated_0"], c["generated_1"], c["generated_2"]] == [120, 0, 80] and c["uniform"] == 50
    assert "final_1" not in c, "a target without draws adds nothing"
    assert c["candidates"] == len(got.U) == c["final_0"] + c["final_2"] + int((got.source == -1).sum())
    assert c["candidates"] + c["invalid"] == 120 + 80 + 50
    assert list(np.unique(got.source)) == [-1, 0, 2]
    assert (np.diff(got.source[got.source >= 0]) >= 0).all(), "targets in order, then the uniform designs"
    assert got.mean is not None and got.mean.shape == got.source.shape
    again = propose_candidates(SPACE, small_ensemble, draws, [0.3, 0.9, 0.7], cfg, np.random.default_rng(0))
    np.testing.assert_array_equal(again.U, got.U)

    blind = propose_candidates(SPACE, None, draws, [0.3, 0.9, 0.7], cfg, np.random.default_rng(0))
    assert (blind.source == -1).all() and blind.mean is None, "without a surrogate: the uniform designs only"
    np.testing.assert_array_equal(blind.U, got.U[got.source == -1])
    assert np.isnan(blind.frame(SPACE)["pred"]).all()
