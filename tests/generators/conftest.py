"""Shared tiny problems and tiny models, so the generator tests stay fast."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from generators import TorchGenerator, TrainConfig, make_generator

NAMES = ("cinn", "inn", "mdn", "cvae")

# Small but structurally complete versions of each model.
TINY_ARCH: dict[str, dict[str, Any]] = {
    "cinn": {"blocks": 3, "hidden": 32, "cond_features": 8, "cond_hidden": 16},
    "inn": {"total_dim": 6, "blocks": 3, "hidden": 32, "rev_warmup": 0.0},
    "mdn": {"components": 4, "hidden": 32, "layers": 2},
    "cvae": {"hidden": 32, "layers": 2, "kl_warmup": 0.0},
}


def tiny_config(epochs: int = 8, seed: int = 0) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=128, lr=3e-3, seed=seed)


def synthetic(n: int = 512, dim: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``u`` uniform in the unit box (n, dim); ``y`` (n,) a smooth function of it."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand((n, dim), generator=gen)
    y = u.sum(dim=1) + 0.2 * torch.sin(3.0 * u[:, 0])
    return u, y


def tiny(name: str, dim: int = 2) -> TorchGenerator:
    return make_generator(name, dim, **TINY_ARCH[name])


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic()


@pytest.fixture(scope="module", params=NAMES)
def trained_once(request: pytest.FixtureRequest) -> tuple[TorchGenerator, Any]:
    """One fitted tiny model per kind (and its report), shared read-only by a module."""
    u, y = synthetic()
    model = tiny(request.param)
    report = model.fit(u, y, config=tiny_config())
    return model, report


@pytest.fixture()
def trained(trained_once: tuple[TorchGenerator, Any]) -> TorchGenerator:
    """A private copy, for tests that train further or otherwise mutate the model."""
    return copy.deepcopy(trained_once[0])


@pytest.fixture()
def make_tiny() -> Any:
    """The ``tiny(name, dim)`` factory, for tests that need a fresh model."""
    return tiny


@pytest.fixture()
def cfg() -> Any:
    """The ``tiny_config(epochs, seed)`` factory."""
    return tiny_config
