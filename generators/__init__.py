"""Inverse generators ``p(u | y)``: a registry, a factory and the one weight-file loader.

Names map to classes so configuration files and the CLI can pick a model by string;
``load_generator`` is the single place where weight files are trusted, so every way a
file can be bad ends in one :class:`~agent.core.errors.WeightsError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from agent.core.errors import InnloopError, UnknownNameError, WeightsError, one_line
from generators.base import WEIGHTS_FORMAT, FitReport, Generator, NotFittedError, TorchGenerator, TrainConfig
from generators.cinn import CINN, CINNArch
from generators.cvae import CVAE, CVAEArch
from generators.inn import INN, INNArch
from generators.mdn import MDN, MDNArch

__all__ = [
    "CINN",
    "CVAE",
    "GENERATORS",
    "INN",
    "MDN",
    "WEIGHTS_FORMAT",
    "CINNArch",
    "CVAEArch",
    "FitReport",
    "Generator",
    "INNArch",
    "MDNArch",
    "NotFittedError",
    "TorchGenerator",
    "TrainConfig",
    "load_generator",
    "make_generator",
]

GENERATORS: dict[str, type[TorchGenerator]] = {
    "cinn": CINN,
    "inn": INN,
    "mdn": MDN,
    "cvae": CVAE,
}


def _lookup(name: str) -> type[TorchGenerator]:
    try:
        return GENERATORS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown generator {name!r}; known generators: {sorted(GENERATORS)}") from None


def make_generator(name: str, dim: int, **arch_kwargs: Any) -> TorchGenerator:
    """A fresh, unfitted generator; ``arch_kwargs`` override its architecture defaults."""
    return _lookup(name).from_arch_dict(dim, arch_kwargs)


def load_generator(path: str | os.PathLike[str], kind: str | None = None) -> TorchGenerator:
    """Read a file written by ``save``; with ``kind`` given, refuse weights of another kind.

    Weights are read with ``weights_only=True``: a weight file never executes code.
    """
    where = Path(path)

    def fail(problem: str) -> WeightsError:
        return WeightsError(f"cannot load generator weights from {str(where)!r}: {problem}")

    if not where.is_file():
        raise fail("file not found" if not where.exists() else "not a regular file")
    try:
        payload = torch.load(where, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for bad bytes; all mean "unreadable"
        raise fail(f"not a readable torch file ({one_line(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        tag = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise fail(f"missing or wrong format tag (expected {WEIGHTS_FORMAT!r}, found {tag!r})")
    found = payload.get("kind")
    if not isinstance(found, str) or found not in GENERATORS:
        raise fail(f"unknown generator kind {found!r}; known generators: {sorted(GENERATORS)}")
    if kind is not None and found != kind:
        raise fail(f"holds a {found!r} generator, expected {kind!r}")
    dim, arch, state = payload.get("dim"), payload.get("arch"), payload.get("state_dict")
    if not isinstance(dim, int) or not isinstance(arch, dict) or not isinstance(state, dict):
        raise fail("malformed header: 'dim' must be an int, 'arch' and 'state_dict' dicts")
    try:
        model = GENERATORS[found].from_arch_dict(dim, arch)
    except (InnloopError, TypeError, ValueError) as exc:
        raise fail(f"unusable architecture {arch!r} ({one_line(exc, kind=False)})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise fail(f"weights do not match a {found!r} generator of dim {dim} ({one_line(exc, kind=False)})") from exc
    model.eval()
    return model
