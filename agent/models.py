"""Trained-model cache under ``state/models``: train once, load (safely) ever after.

A cached file is keyed by what determines it: the material, a fingerprint of the
training rows, the component's configuration and its seed. Change any of them and a new
file is trained; nothing is silently reused for data it was not trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.atomic import write_json
from agent.surrogate import EnsembleConfig, SurrogateEnsemble
from generators import Generator, load_generator, make_generator

__all__ = ["ModelStore", "default_state_dir", "fingerprint", "resolve_state_dir"]


def default_state_dir() -> Path:
    """``$INNLOOP_STATE_DIR`` if set, else ``./state`` (campaigns and model caches live there),
    as an absolute path: a relative one is taken against the current folder now, once, so
    that job processes started in other folders are handed the same place."""
    return resolve_state_dir(os.environ.get("INNLOOP_STATE_DIR") or "state")


def resolve_state_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """The state folder a user gave (``--state``), absolute against the current folder, else
    `default_state_dir`: what every command resolves once, where the user's value enters."""
    if given is None or not str(given):
        return default_state_dir()
    return Path(os.path.abspath(Path(given).expanduser()))


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
