"""Inverse generators ``p(u | y)``: a registry, a factory and the one weight-file loader.

Names map to classes so configuration files and the CLI can pick a model by string;
``load_generator`` is the single place where weight files are trusted, so every way a
file can be bad ends in one :class:`~agent.core.errors.WeightsError` naming the file.

``GENERATORS`` holds the built-ins; other installed packages add `TorchGenerator`
subclasses through ``innloop.generators`` entry points (`agent.core.plugins`), named as
the class's ``name`` so their weight files find them again. `available_generators` lists
both; every lookup here goes through one function that never lets a plugin shadow a
built-in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from agent.core.errors import ConfigError, InnloopError, UnknownNameError, WeightsError, one_line
from agent.core.plugins import EntryPoint, PluginGroup
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
    "PLUGINS",
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
    "available_generators",
    "load_generator",
    "make_generator",
]

GENERATORS: dict[str, type[TorchGenerator]] = {
    "cinn": CINN,
    "inn": INN,
    "mdn": MDN,
    "cvae": CVAE,
}


def _generator_plugin(obj: object, ep: EntryPoint) -> type[TorchGenerator]:
    """A plugin's generator: a `TorchGenerator` subclass whose ``name`` is its entry point's."""
    if not (isinstance(obj, type) and issubclass(obj, TorchGenerator)):
        raise ConfigError(f"expected a TorchGenerator subclass, got {obj!r}")
    if obj.name != ep.name:  # its weight files carry `name` as their kind, looked up here again
        raise ConfigError(f"its entry point is named {ep.name!r} but {obj.__name__}.name is {obj.name!r}")
    return obj


# Generators that other installed packages declare (entry points ``innloop.generators``).
PLUGINS: PluginGroup[type[TorchGenerator]] = PluginGroup(
    "innloop.generators", "generator", _generator_plugin, lambda: list(GENERATORS)
)


def available_generators() -> list[str]:
    """Names of every generator, built in and plugins (a broken or clashing plugin's name
    too: asking for it says what is wrong), sorted."""
    return sorted(set(GENERATORS) | set(PLUGINS.names()))


def _lookup(name: object) -> type[TorchGenerator]:
    """The class called ``name``; `UnknownNameError`, or `ConfigError` for a broken or clashing plugin."""
    if not isinstance(name, str):
        raise UnknownNameError(f"unknown generator {name!r}; known generators: {available_generators()}")
    try:
        return PLUGINS.get(name)
    except KeyError:
        pass
    try:
        return GENERATORS[name]
    except KeyError:
        raise UnknownNameError(f"unknown generator {name!r}; known generators: {available_generators()}") from None


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
    try:
        cls = _lookup(found)
    except UnknownNameError:
        raise fail(f"unknown generator kind {found!r}; known generators: {available_generators()}") from None
    except InnloopError as exc:  # a broken or clashing plugin of that name
        raise fail(f"generator kind {found!r}: {exc}") from None
    if kind is not None and found != kind:
        raise fail(f"holds a {found!r} generator, expected {kind!r}")
    dim, arch, state = payload.get("dim"), payload.get("arch"), payload.get("state_dict")
    if not isinstance(dim, int) or not isinstance(arch, dict) or not isinstance(state, dict):
        raise fail("malformed header: 'dim' must be an int, 'arch' and 'state_dict' dicts")
    try:
        model = cls.from_arch_dict(dim, arch)
    except (InnloopError, TypeError, ValueError) as exc:
        raise fail(f"unusable architecture {arch!r} ({one_line(exc, kind=False)})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise fail(f"weights do not match a {found!r} generator of dim {dim} ({one_line(exc, kind=False)})") from exc
    model.eval()
    return model
