"""Assemble what a design pass needs: the material, its data and the trained models.

The CLI, the benchmark and the loop all come through here, so "which data, which
settings, which cache" is decided in one place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.core.atomic import write_json
from agent.core.materials import Material, get_material
from agent.core.observations import Observations
from agent.core.paths import default_state_dir
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from generators import Generator, load_generator, make_generator

__all__ = ["DesignSetup", "LoadedModels", "ModelStore", "fingerprint", "load_models", "training_data"]


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
        from agent.core.errors import DataError

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


def fingerprint(*arrays: np.ndarray, extra: Any = None) -> str:
    """Short content hash of arrays (bytes + shapes) and a JSON-able extra."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    if extra is not None:
        h.update(json.dumps(_plain(extra), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        d = asdict(obj)
        d.pop("progress", None)  # display only: must not change the key
        return d
    return obj


@dataclass
class ModelStore:
    """Loads or trains surrogates and generators, one file per key under ``root/models/``."""

    root: Path
    retrain: bool = False

    def _path(self, material: str, kind: str, key: str) -> Path:
        return Path(self.root) / "models" / material / f"{kind}-{key}.pt"

    def surrogate(
        self,
        material: str,
        U: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None,
        config: EnsembleConfig,
    ) -> tuple[SurrogateEnsemble, Path, bool]:
        """Return ``(model, path, trained_now)``."""
        key = fingerprint(U, y, extra={"surrogate": _plain(config)})
        path = self._path(material, "surrogate", key)
        if path.exists() and not self.retrain:
            return SurrogateEnsemble.load(path), path, False
        model = SurrogateEnsemble(U.shape[1], config)
        summary = model.fit(U, y, groups, warm_start=False)
        model.save(path)
        write_json(
            path.with_suffix(".json"),
            {"kind": "surrogate", "config": _plain(config), "fit": asdict(summary) | {"history": summary.history[-5:]}},
        )
        return model, path, True

    def generator(
        self,
        material: str,
        name: str,
        U: np.ndarray,
        y: np.ndarray,
        train: dict[str, Any] | None = None,
        arch: dict[str, Any] | None = None,
    ) -> tuple[Generator, Path, bool]:
        """Return ``(generator, path, trained_now)``.

        ``train`` overrides fields of the generator's own default `TrainConfig` (seed,
        epochs, progress …); ``arch`` overrides its architecture defaults.
        """
        arch = dict(arch or {})
        overrides = {k: v for k, v in (train or {}).items() if v is not None}
        gen = make_generator(name, U.shape[1], **arch)
        config = replace(gen.default_train_config(), **overrides)
        key = fingerprint(U, y, extra={"generator": name, "arch": arch, "train": _plain(config)})
        path = self._path(material, f"generator-{name}", key)
        if path.exists() and not self.retrain:
            return load_generator(path, kind=name), path, False
        report = gen.fit(_tensor(U), _tensor(y), config=config, warm_start=False)
        gen.save(path)
        write_json(
            path.with_suffix(".json"),
            {"kind": name, "arch": arch, "train": _plain(config), "seconds": getattr(report, "seconds", None)},
        )
        return gen, path, True


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)
