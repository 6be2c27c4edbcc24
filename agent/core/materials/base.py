"""What a material is to innloop, and the registry that finds one by name.

A `Material` bundles everything that differs between applications: the design space,
the property being designed (its column name, unit and physical floor), a builder that
turns a design point into a crystal structure for the oracles, and the bundled data.
Models never see a `Material`; they see unit-box arrays. Keeping the per-material facts
here is what lets a second material plug in by registering one object.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.core.errors import ConfigError, UnknownNameError
from agent.core.space import DesignSpace

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from agent.core.observations import Observations

__all__ = ["Material", "Symmetry", "available_materials", "get_material", "register_material"]

# Modules that register built-in materials when imported. Importing them only when a
# name is first looked up keeps `import agent.core.materials` free of work.
_BUILTIN_MODULES: tuple[str, ...] = ("agent.core.materials.mos2",)

_REGISTRY: dict[str, Material] = {}


def _no_metadata(x: np.ndarray) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Symmetry:
    """A map of the unit box that leaves the target property unchanged.

    ``u' = flip(u[permutation])``: coordinates are first permuted, then those listed in
    ``flip`` are mirrored (``u -> 1 - u``). A model that knows the group learns from one
    measurement what it would otherwise need several for.
    """

    name: str
    permutation: tuple[int, ...]
    flip: tuple[int, ...] = ()

    def apply(self, U: np.ndarray) -> np.ndarray:
        out = np.asarray(U, dtype=np.float64)[..., list(self.permutation)].copy()
        if self.flip:
            out[..., list(self.flip)] = 1.0 - out[..., list(self.flip)]
        return out


@dataclass(frozen=True)
class Material:
    """One design application: a space, a target property and the glue to real structures.

    ``build`` maps one physical design point ``(d,)`` to a pymatgen ``Structure``;
    ``metadata`` returns what is part of the design but not of the geometry (e.g. an
    applied field) so writers and oracles can carry it alongside the structure;
    ``dataset`` loads the bundled observations, or is ``None`` when there are none.
    ``target_lower_bound`` is the physical floor of the target (0 for a band gap), used
    to reject impossible data and clip predictions; ``None`` means unbounded.
    ``symmetries`` generate the group of unit-box maps under which the target is
    invariant (exact physics, e.g. relabelling lattice vectors), used by models.
    """

    name: str
    description: str
    space: DesignSpace
    target: str
    target_unit: str
    target_lower_bound: float | None
    build: Callable[[np.ndarray], Structure]
    metadata: Callable[[np.ndarray], dict[str, Any]] = _no_metadata
    dataset: Callable[[], Observations] | None = None
    symmetries: tuple[Symmetry, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ConfigError(f"material name {self.name!r} must be a non-empty identifier")
        if not self.target or not self.target.isidentifier():
            raise ConfigError(f"material {self.name!r}: target {self.target!r} is not a valid name")
        if self.target in self.space.names:
            raise ConfigError(f"material {self.name!r}: target {self.target!r} clashes with a design parameter")
        if self.target_lower_bound is not None and not np.isfinite(self.target_lower_bound):
            raise ConfigError(f"material {self.name!r}: target_lower_bound must be finite or None")


def _load_builtins() -> None:
    """Import the built-in material modules; each registers itself on first import."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def register_material(material: Material) -> Material:
    """Add ``material`` under its name; a second material with the same name is an error."""
    _load_builtins()  # so a user material cannot silently shadow a built-in one
    if material.name in _REGISTRY:
        raise ConfigError(f"a material named {material.name!r} is already registered")
    _REGISTRY[material.name] = material
    return material


def get_material(name: str) -> Material:
    """The registered material called ``name``; raises `UnknownNameError` listing known names."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownNameError(f"unknown material {name!r}; known materials: {known}") from None


def available_materials() -> list[str]:
    """Names of all registered materials, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)
