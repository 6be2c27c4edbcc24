"""What a material is to innloop, and the registry that finds one by name.

A `Material` bundles everything that differs between applications: the design space,
the property being designed (its column name, unit and physical floor), a builder that
turns a design point into a crystal structure for the oracles, and the bundled data.
Models never see a `Material`; they see unit-box arrays. Keeping the per-material facts
here is what lets a second material plug in by registering one object: the DFT oracles
build what its builder builds (in any atomic-position convention it names), apply the
field its metadata carries along the axis it declares, and the strain features measure
against the unstrained cell it declares. No oracle or report module knows a material
by its module. Other packages register theirs through the ``innloop.materials`` entry
point; a material that is not a crystal (a lab's recipe) has no builder at all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.core.errors import ConfigError, UnknownNameError
from agent.core.plugins import EntryPoint, PluginGroup
from agent.core.space import DesignSpace

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from agent.core.observations import Observations

__all__ = [
    "AppliedField",
    "Material",
    "ReferenceCell",
    "Symmetry",
    "as_material",
    "available_materials",
    "get_material",
    "register_material",
]

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
class AppliedField:
    """An electric field that is part of a design, as the DFT oracles need to apply it.

    ``key``: the `Material.metadata` entry holding the field in V/Å. ``axis``: the lattice
    vector (0, 1 or 2) it runs along. VASP applies EFIELD along IDIPOL = ``axis + 1``,
    with the dipole correction centred on the atoms' mean height along that vector; GPAW
    applies a sawtooth along the normal of the other two vectors, whose jump sits at the
    cell boundary, so the builder must leave vacuum there (a layer: its normal, with the
    layer in the middle of the cell).
    """

    key: str
    axis: int = 2

    def __post_init__(self) -> None:
        if not self.key or self.axis not in (0, 1, 2):
            raise ConfigError(f"applied field {self.key!r}: needs a metadata key and an axis of 0, 1 or 2")


@dataclass(frozen=True)
class ReferenceCell:
    """The unstrained cell of a material: lengths ``(a0, b0, c0)`` in Å, angles in degrees.

    What strain is measured against (`agent.insight.strain`) for a design of cells.
    """

    lengths: tuple[float, float, float]
    angles: tuple[float, float, float]

    def __post_init__(self) -> None:
        if min(self.lengths) <= 0 or not all(0 < t < 180 for t in self.angles):
            raise ConfigError(f"reference cell is not a cell: {self.lengths}, {self.angles}")

    def value(self, name: str) -> float:
        """The unstrained value of ``name`` (one of ``a, b, c, alpha, beta, gamma``)."""
        names = ("a", "b", "c", "alpha", "beta", "gamma")
        if name not in names:
            raise UnknownNameError(f"{name!r} is not a cell parameter; expected one of {names}")
        return (*self.lengths, *self.angles)[names.index(name)]


@dataclass(frozen=True)
class Material:
    """One design application: a space, a target property and the glue to real structures.

    ``build`` maps one physical design point ``(d,)`` to a pymatgen ``Structure``, and
    raises `DesignError` for a point it cannot build (for MoS2: a degenerate cell, or
    layers closer than its vacuum rule allows); DFT oracles rely on it to refuse a cell
    before launching a calculation. ``conventions`` names the builders a DFT oracle may
    ask for instead (other placements of the atoms in the same cell, the ``convention``
    setting); the first one must be ``build`` itself, and is the default.
    ``metadata`` returns what is part of the design but not of the geometry (e.g. an
    applied field) so writers and oracles can carry it alongside the structure;
    ``applied_field`` says which metadata entry is an electric field and where it points.
    ``dataset`` loads the bundled observations, or is ``None`` when there are none;
    ``dataset_bounds_targets``: whether the data's target range bounds the targets a
    campaign may ask for (False for a table that samples too little of the space to say
    what the property cannot reach).
    ``target_lower_bound`` is the physical floor of the target (0 for a band gap), used
    to reject impossible data and clip predictions; ``None`` means unbounded;
    ``target_upper_bound`` is its ceiling (1 for a yield), likewise.
    ``build`` is ``None`` for a design space that is not a crystal (a recipe measured by a
    lab, a space declared in a campaign file): oracles that need a structure refuse it.
    ``symmetries`` generate the group of unit-box maps under which the target is
    invariant (exact physics, e.g. relabelling lattice vectors), used by models.
    ``reference_cell`` is the unstrained cell strain features measure against (``None``:
    the design is not a strained cell).
    """

    name: str
    description: str
    space: DesignSpace
    target: str
    target_unit: str
    target_lower_bound: float | None
    build: Callable[[np.ndarray], Structure] | None = None
    target_upper_bound: float | None = None
    metadata: Callable[[np.ndarray], dict[str, Any]] = _no_metadata
    dataset: Callable[[], Observations] | None = None
    dataset_bounds_targets: bool = True
    symmetries: tuple[Symmetry, ...] = ()
    conventions: Mapping[str, Callable[[np.ndarray], Structure]] = field(default_factory=dict, hash=False)
    applied_field: AppliedField | None = None
    reference_cell: ReferenceCell | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ConfigError(f"material name {self.name!r} must be a non-empty identifier")
        if not self.target or not self.target.isidentifier():
            raise ConfigError(f"material {self.name!r}: target {self.target!r} is not a valid name")
        if self.target in self.space.names:
            raise ConfigError(f"material {self.name!r}: target {self.target!r} clashes with a design parameter")
        for key in ("target_lower_bound", "target_upper_bound"):
            bound = getattr(self, key)
            if bound is not None and not np.isfinite(bound):
                raise ConfigError(f"material {self.name!r}: {key} must be finite or None")
        lo, hi = self.target_lower_bound, self.target_upper_bound
        if lo is not None and hi is not None and not lo < hi:
            raise ConfigError(f"material {self.name!r}: target floor {lo:g} is not below its ceiling {hi:g}")
        if self.conventions and self.build is None:
            raise ConfigError(f"material {self.name!r}: atomic-position conventions need a `build`")
        if self.conventions and next(iter(self.conventions.values())) is not self.build:
            raise ConfigError(f"material {self.name!r}: the first of its conventions must be its `build`")

    def convention(self, name: str | None = None) -> str | None:
        """The atomic-position convention called ``name`` (``None``: the default, itself
        ``None`` when the material names none); `ConfigError` for one it does not have."""
        if name is None:
            return next(iter(self.conventions), None)
        if name not in self.conventions:
            known = ", ".join(repr(c) for c in self.conventions) or "none (it has one builder)"
            raise ConfigError(f"material {self.name!r} has no atomic-position convention {name!r}; it has {known}")
        return name

    def structure(self, x: np.ndarray, convention: str | None = None) -> Structure:
        """One physical design point ``(d,)`` built under ``convention`` (``None``: `build`)."""
        name = self.convention(convention)
        if name is None:
            return self.builder()(x)
        return self.conventions[name](x)

    def builder(self) -> Callable[[np.ndarray], Structure]:
        """`build`, or a `ConfigError` for a material that is not a crystal (it builds nothing)."""
        if self.build is None:
            raise ConfigError(
                f"material {self.name!r} has no structure builder (its designs are not crystals); "
                "use an oracle that measures its designs as they are (table, http, a plugin)"
            )
        return self.build

    def unstrained_design(self) -> np.ndarray:
        """The ``(d,)`` design of the unstrained cell: `reference_cell`'s value for each cell
        parameter (a, b, c, alpha, beta, gamma) and 0 for every other one (no field).

        What a strain energy is measured from. `ConfigError` for a material without a
        reference cell, or one where 0 lies outside a non-cell parameter's bounds."""
        ref = self.reference_cell
        if ref is None:
            raise ConfigError(f"material {self.name!r} declares no unstrained (reference) cell")
        cell = ("a", "b", "c", "alpha", "beta", "gamma")
        x = np.array([ref.value(p.name) if p.name in cell else 0.0 for p in self.space.parameters])
        outside = [p.name for p, v in zip(self.space.parameters, x, strict=True) if not p.lower <= v <= p.upper]
        if outside:
            raise ConfigError(f"material {self.name!r}: its unstrained design lies outside the bounds of {outside}")
        return x

    def field_strength(self, x: np.ndarray) -> float:
        """The applied field of one design point in V/Å, from `metadata` (0 without an `applied_field`)."""
        if self.applied_field is None:
            return 0.0
        key = self.applied_field.key
        meta = self.metadata(x)
        if key not in meta:  # the material's declaration is wrong, not the design: infrastructure, retried
            raise ConfigError(f"material {self.name!r} declares the field {key!r}, but its metadata carries none")
        return float(meta[key])


def _load_builtins() -> None:
    """Import the built-in material modules; each registers itself on first import."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def _own_names() -> list[str]:
    """Built-in and registered names: the ones no plugin may take."""
    _load_builtins()
    return list(_REGISTRY)


def _material_plugin(obj: object, ep: EntryPoint) -> Material:
    """A plugin's `Material`, or what its zero-argument factory returns, named as its entry point."""
    material = obj() if callable(obj) and not isinstance(obj, Material) else obj
    if not isinstance(material, Material):
        raise ConfigError(f"expected a Material or a function returning one, got {type(material).__name__}")
    if material.name != ep.name:
        raise ConfigError(f"its entry point is named {ep.name!r} but its material {material.name!r}")
    return material


# Materials that other installed packages declare (entry points ``innloop.materials``),
# imported when their name is first looked up.
PLUGINS: PluginGroup[Material] = PluginGroup("innloop.materials", "material", _material_plugin, _own_names)


def register_material(material: Material) -> Material:
    """Add ``material`` under its name; a second material with the same name is an error
    (and one named like a plugin makes that name's lookup fail, naming both)."""
    _load_builtins()  # so a user material cannot silently shadow a built-in one
    if material.name in _REGISTRY:
        raise ConfigError(f"a material named {material.name!r} is already registered")
    _REGISTRY[material.name] = material
    return material


def as_material(material: str | Material) -> Material:
    """``material`` itself, or the registered material of that name: oracles take either,
    so a campaign's own space (declared in its file, registered nowhere) reaches them too."""
    return material if isinstance(material, Material) else get_material(material)


def get_material(name: str) -> Material:
    """The registered or plugin material called ``name``; raises `UnknownNameError` listing
    known names, `ConfigError` for a plugin that is broken or takes a name already taken."""
    _load_builtins()
    try:
        return PLUGINS.get(name)
    except KeyError:
        pass
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_materials()) or "none"
        raise UnknownNameError(f"unknown material {name!r}; known materials: {known}") from None


def available_materials() -> list[str]:
    """Names of all materials, registered and plugins, sorted. A broken or clashing plugin's
    name is listed too: looking it up says what is wrong with it."""
    _load_builtins()
    return sorted(set(_REGISTRY) | set(PLUGINS.names()))
