"""The generator contract, checked identically for every registered model."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from agent.core.errors import ConfigError, InnloopError, TargetError
from generators import FitReport, Generator, NotFittedError, TorchGenerator, TrainConfig


def test_fit_report_and_loss_trend(trained_once: tuple[TorchGenerator, FitReport]) -> None:
    model, report = trained_once
    assert isinstance(report, FitReport)
    assert report.epochs == 8 and len(report.losses) == 8
    assert not report.warm_started and report.seconds > 0
    assert report.final_loss == report.losses[-1]
    assert all(math.isfinite(v) for v in report.losses)
    first, last = sum(report.losses[:2]) / 2, sum(report.losses[-2:]) / 2
    assert last < first, f"{model.name}: loss did not go down ({report.losses})"
    assert model.fitted
    assert isinstance(model, Generator)


def test_target_range_is_the_training_range(trained_once: tuple[TorchGenerator, FitReport], data: Any) -> None:
    lo, hi = trained_once[0].target_range
    assert lo == pytest.approx(float(data[1].min())) and hi == pytest.approx(float(data[1].max()))


def test_sample_shape_and_determinism(trained_once: tuple[TorchGenerator, FitReport]) -> None:
    model = trained_once[0]
    a = model.sample(1.0, 64, seed=3)
    b = model.sample(1.0, 64, seed=3)
    c = model.sample(1.0, 64, seed=4)
    assert a.shape == (64, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert bool(torch.isfinite(a).all())
    assert model.sample(1.0, 1, seed=0).shape == (1, 2)


def test_sampling_leaves_global_rng_and_mode_alone(trained_once: tuple[TorchGenerator, FitReport]) -> None:
    model = trained_once[0]
    model.train()
    state = torch.get_rng_state()
    model.sample(0.8, 16, seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert model.training
    model.eval()


@pytest.mark.parametrize("target", [-5.0, 2.9, math.nan, math.inf, "1.0"])
def test_target_outside_range_raises(trained_once: tuple[TorchGenerator, FitReport], target: Any) -> None:
    with pytest.raises(TargetError, match="target"):
        trained_once[0].sample(target, 4, seed=0)


def test_range_message_names_target_and_range(trained_once: tuple[TorchGenerator, FitReport]) -> None:
    model = trained_once[0]
    lo, hi = model.target_range
    with pytest.raises(TargetError) as info:
        model.sample(hi + 1.0, 4, seed=0)
    assert f"{hi + 1.0:g}" in str(info.value) and f"{lo:g}" in str(info.value)


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_bad_sample_count(trained_once: tuple[TorchGenerator, FitReport], n: Any) -> None:
    with pytest.raises(ConfigError, match="n must be"):
        trained_once[0].sample(1.0, n, seed=0)


@pytest.mark.parametrize("name", ["cinn", "inn", "mdn", "cvae"])
def test_unfitted_sample_raises(name: str, make_tiny: Any) -> None:
    model = make_tiny(name)
    assert not model.fitted
    with pytest.raises(NotFittedError, match="not fitted") as info:
        model.sample(1.0, 4, seed=0)
    assert isinstance(info.value, InnloopError)


def test_warm_start_continues_and_keeps_standardisation(trained: TorchGenerator, cfg: Any) -> None:
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    u, y = torch.rand(300, 2) * 0.5, torch.linspace(-0.5, 3.5, 300)  # other scale, wider targets
    report = trained.fit(u, y, config=cfg(epochs=8))
    assert report.warm_started and report.epochs == 2 and len(report.losses) == 2
    for key in ("u_mean", "u_std", "y_mean", "y_std"):
        assert torch.equal(trained.state_dict()[key], before[key]), key
    assert trained.target_range == (-0.5, 3.5)  # widened to everything seen
    changed = [k for k, v in trained.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k not in {"y_min", "y_max"} for k in changed), "warm start should train the weights"


def test_warm_start_false_reinitialises(trained: TorchGenerator, data: Any, cfg: Any) -> None:
    u, y = data
    report = trained.fit(u * 0.5, y, config=cfg(epochs=2), warm_start=False)
    assert not report.warm_started and report.epochs == 2
    torch.testing.assert_close(trained.u_mean, (u * 0.5).mean(dim=0))


@pytest.mark.parametrize("name", ["cinn", "inn", "mdn", "cvae"])
def test_same_seed_same_weights(name: str, make_tiny: Any, cfg: Any, data: Any) -> None:
    u, y = data
    a, b, c = make_tiny(name), make_tiny(name), make_tiny(name)
    a.fit(u, y, config=cfg(epochs=2, seed=7))
    b.fit(u, y, config=cfg(epochs=2, seed=7))
    c.fit(u, y, config=cfg(epochs=2, seed=8))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize(
    ("u", "y", "match"),
    [
        (torch.rand(10, 3), torch.rand(10), r"shape \(n, 2\)"),
        (torch.rand(10), torch.rand(10), r"shape \(n, 2\)"),
        (torch.rand(10, 2), torch.rand(10, 1), r"y must have shape \(n,\)"),
        (torch.rand(10, 2), torch.rand(9), "10 rows but y has 9"),
        (torch.full((10, 2), math.nan), torch.rand(10), "U contains 20 non-finite"),
        (torch.rand(10, 2), torch.tensor([math.inf] + [0.0] * 9), "y contains 1 non-finite"),
        (torch.rand(1, 2), torch.rand(1), "at least 2"),
    ],
)
def test_bad_fit_inputs(u: torch.Tensor, y: torch.Tensor, match: str, make_tiny: Any) -> None:
    model = make_tiny("mdn")
    with pytest.raises(ConfigError, match=match):
        model.fit(u, y, config=TrainConfig(epochs=1))
    assert not model.fitted


def test_fit_accepts_arrays_and_other_schedules(make_tiny: Any, data: Any) -> None:
    u, y = data
    for schedule in ("cosine", "constant"):
        model = make_tiny("mdn")
        report = model.fit(u.numpy(), y.numpy(), config=TrainConfig(epochs=2, schedule=schedule, progress=True))
        assert report.epochs == 2 and model.fitted


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"warm_epochs": -1}, "warm_epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"weight_decay": -1e-3}, "weight_decay"),
        ({"seed": -1}, "seed"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"progress": "yes"}, "progress"),
        ({"schedule": "step"}, "schedule"),
    ],
)
def test_train_config_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=f"TrainConfig.{field}"):
        TrainConfig(**kwargs)


def test_train_config_defaults() -> None:
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.seed, cfg.grad_clip) == (256, 1e-3, 0.0, 0, 10.0)
    assert cfg.resolved(100) == (100, 25)
    assert TrainConfig(epochs=3).resolved(100) == (3, 1)
    assert TrainConfig(epochs=40, warm_epochs=7).resolved(100) == (40, 7)
