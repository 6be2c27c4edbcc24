"""Assemble what a design pass needs: the material, its data and the trained models.

The CLI, the benchmark and the loop all come through here, so "which data, which
settings, which cache" is decided in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.data import Observations
from agent.materials import Material, get_material
from agent.models import ModelStore, default_state_dir
from agent.surrogate import EnsembleConfig, SurrogateEnsemble
from generators import Generator

__all__ = ["DesignSetup", "LoadedModels", "load_models", "training_data"]


@dataclass
class DesignSetup:
    """Which material and generator, where the cache lives, and the training settings."""

    material: str = "mos2"
    generator: str = "cinn"
    state_dir: Path | None = None
    retrain: bool = False
    seed: int = 0
    progress: bool = True
    surrogate: EnsembleConfig | None = None
    generator_train: dict[str, Any] = field(default_factory=dict)
    generator_arch: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModels:
    material: Material
    data: Observations
    surrogate: SurrogateEnsemble
    generator: Generator
    paths: dict[str, Path]


def training_data(material: Material) -> Observations:
    """The material's bundled observations with exact duplicate rows dropped."""
    if material.dataset is None:
        from agent.errors import DataError

        raise DataError(f"material {material.name!r} ships no dataset; pass your own observations")
    return material.dataset().deduplicate("exact")


def load_models(
    setup: DesignSetup,
    data: Observations | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> LoadedModels:
    """Load cached models for ``data`` (default: the bundled dataset) or train and cache them."""
    material = get_material(setup.material)
    obs = data if data is not None else training_data(material)
    store = ModelStore(setup.state_dir or default_state_dir(), retrain=setup.retrain)
    U, y = obs.U, obs.y
    scfg = replace(setup.surrogate or EnsembleConfig(seed=setup.seed), progress=setup.progress)
    surrogate, spath, trained = store.surrogate(material.name, U, y, obs.groups(), scfg)
    log(f"surrogate: {'trained and saved' if trained else 'loaded'} {spath}")
    gcfg = {"seed": setup.seed} | setup.generator_train | {"progress": setup.progress}
    generator, gpath, trained = store.generator(
        material.name, setup.generator, U, np.asarray(y), gcfg, setup.generator_arch
    )
    log(f"generator {setup.generator}: {'trained and saved' if trained else 'loaded'} {gpath}")
    return LoadedModels(material, obs, surrogate, generator, {"surrogate": spath, "generator": gpath})
