"""The trained models as one bundle, and the two places a bundle comes from.

`TrainedModels` is innloop's one "models" concept: the deep-ensemble surrogate (it
localizes candidates and gives their σ), the generator (it proposes designs; none for an
oracle that measures only its own pool), the acquisition's model (the symmetry-invariant
GP when a campaign asks for one), a model per constrained property (`agent.campaign.feasibility`)
and what their fits reported. Each place that needs
models gets this bundle, and each job on it is one function:

- a campaign keeps one bundle per iteration in the iteration's folder: `TrainedModels.save`
  and `TrainedModels.load` (``weights_only`` loaders);
- ``innloop design`` and the benchmarks train on a dataset once and reuse the result:
  `cached_models` through `ModelCache`, one file per data-and-settings fingerprint.
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
from botorch.models.model import Model

from agent.core.atomic import write_json
from agent.core.errors import DataError
from agent.core.materials import Material, get_material
from agent.core.observations import Observations
from agent.core.paths import default_state_dir
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from generators import Generator, load_generator, make_generator

__all__ = ["DesignSetup", "ModelCache", "TrainedModels", "cached_models", "fingerprint", "training_data"]

SURROGATE_FILE, GENERATOR_FILE = "surrogate.pt", "generator.pt"


@dataclass(frozen=True)
class TrainedModels:
    """The surrogate, the generator, the acquisition's model and what their fits reported.

    Frozen: whoever wants other models makes a new bundle (`dataclasses.replace`), so a
    bundle handed to planning or a report is never changed under its holder. ``fit`` is a
    record for ``metrics.json`` (training rows, the ensemble's σ scale, seconds), not a model.
    """

    surrogate: SurrogateEnsemble
    generator: Generator | None = None
    acquisition: Model | None = None  # None: the acquisition scores on the surrogate
    fit: dict[str, Any] = field(default_factory=dict)
    # one model per [[constraints]] entry (None: too few results carry it yet); like the
    # acquisition's GP, refitted from the ledger each iteration, never saved
    feasibility: tuple[Model | None, ...] = ()

    @property
    def scorer(self) -> Model:
        """The model the acquisition scores candidates with."""
        return self.acquisition if self.acquisition is not None else self.surrogate

    def save(self, folder: Path) -> None:
        """Write the surrogate and the generator into ``folder`` (the acquisition's GP is refitted, never saved)."""
        self.surrogate.save(Path(folder) / SURROGATE_FILE)
        if self.generator is not None:
            self.generator.save(Path(folder) / GENERATOR_FILE)

    @classmethod
    def load(cls, folder: Path, generator_kind: str) -> TrainedModels | None:
        """The bundle `save` wrote into ``folder``, or ``None`` when it holds no surrogate."""
        folder = Path(folder)
        if not (folder / SURROGATE_FILE).exists():
            return None
        path = folder / GENERATOR_FILE
        generator = load_generator(path, kind=generator_kind) if path.exists() else None
        return cls(SurrogateEnsemble.load(folder / SURROGATE_FILE), generator)


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


def training_data(material: Material) -> Observations:
    """The material's bundled observations with exact duplicate rows dropped."""
    if material.dataset is None:
        raise DataError(f"material {material.name!r} ships no dataset; pass your own observations")
    return material.dataset().deduplicate("exact")


def cached_models(
    setup: DesignSetup,
    data: Observations | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> TrainedModels:
    """Models trained on ``data`` (default: the material's bundled dataset), from the cache or trained and cached.

    ``fit`` records the two weight files and whether each was trained now.
    """
    material = get_material(setup.material)
    obs = data if data is not None else training_data(material)
    cache = ModelCache(setup.state_dir or default_state_dir(), retrain=setup.retrain)
    U, y = obs.U, obs.y
    scfg = replace(setup.surrogate or EnsembleConfig(seed=setup.seed), progress=setup.progress)
    surrogate, spath, s_trained = cache.surrogate(material.name, U, y, obs.groups(), scfg)
    log(f"surrogate: {'trained and saved' if s_trained else 'loaded'} {spath}")
    gcfg = {"seed": setup.seed} | setup.generator_train | {"progress": setup.progress}
    generator, gpath, g_trained = cache.generator(
        material.name, setup.generator, U, np.asarray(y), gcfg, setup.generator_arch
    )
    log(f"generator {setup.generator}: {'trained and saved' if g_trained else 'loaded'} {gpath}")
    fit = {"surrogate_file": str(spath), "surrogate_trained": s_trained}
    fit |= {"generator_file": str(gpath), "generator_trained": g_trained}
    return TrainedModels(surrogate, generator, fit=fit)


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
class ModelCache:
    """Loads or trains surrogates and generators, one file per key under ``root/models/``.

    The key is a fingerprint of the training data and every setting, so a cached model is
    reused only for exactly the data and settings it was trained with.
    """

    root: Path
    retrain: bool = False

    def _path(self, material: str, kind: str, key: str) -> Path:
        return Path(self.root) / "models" / material / f"{kind}-{key}.pt"

    def surrogate_path(self, material: str, U: np.ndarray, y: np.ndarray, config: EnsembleConfig) -> Path:
        """The file `surrogate` reads or writes for these rows and settings (it may not exist yet)."""
        return self._path(material, "surrogate", fingerprint(U, y, extra={"surrogate": _plain(config)}))

    def surrogate(
        self,
        material: str,
        U: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None,
        config: EnsembleConfig,
    ) -> tuple[SurrogateEnsemble, Path, bool]:
        """Return ``(model, path, trained_now)`` for unit-box ``U (n, d)`` and ``y (n,)``."""
        path = self.surrogate_path(material, U, y, config)
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
        """Return ``(generator, path, trained_now)`` for unit-box ``U (n, d)`` and ``y (n,)``.

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
            {"kind": name, "arch": arch, "train": _plain(config), "seconds": report.seconds},
        )
        return gen, path, True


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)
