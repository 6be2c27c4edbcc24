"""The 2H MX2 monolayer family as one prototype: MoS2, WS2, MoSe2, WSe2, MoTe2.

Why a prototype. The group-6 dichalcogenides share one crystal: a metal plane between
two chalcogen planes in trigonal-prismatic (2H, D3h) coordination. Their design problems
differ only in a handful of constants -- which atoms, the unstrained in-plane lattice
constant ``a0``, the unstrained cell height ``c0`` and the chalcogen height ``d`` -- so
one frozen `MX2` of those constants plus `mx2_material` gives each member the same
strain-and-field design space *relative to its own unstrained cell*, the same atomic
convention, the same vacuum rule and the same symmetries. `agent.core.materials.mos2`
builds MoS2 from it (with its data's bounds and its bundled dataset); this module
registers the others. WS2 ships a GPAW replay table made by innloop itself
(``agent/data/ws2``, the ``table`` oracle's default for it); the rest have no bundled data
(``dataset=None``): a campaign on one of them starts from random designs or from data the
user gives.

Design point, in physical units: ``(a, b, c, alpha, beta, gamma, efield)`` (Å, degrees,
V/Å); target: the PBE band gap ``gap`` in eV, floor 0. Bounds: 0.8..1.2 × ``a0`` for a
and b, 0.8..1.2 × ``c0`` for c, alpha and beta 72..108°, gamma 96..144° (±20 % around the
hexagonal 90/90/120°), the field -1..1 V/Å.

Atoms. Metal at fractional (1/3, 2/3, 1/2), chalcogens at (2/3, 1/3, 1/2 ± d/c0) in the
strained cell ("fractional", the default: the chalcogen planes move with c, as the
bundled MoS2 data require -- see `agent.core.materials.mos2.build_structure`), or d
above and below the metal plane along the layer normal ("cartesian": c changes only the
vacuum). The layer lies in the xy plane at half height; the field runs along the third
lattice vector (`AppliedField` axis 2) and travels as metadata.

What c0 means. A monolayer has no c of its own: ``c0`` is the height of the unstrained
design's cell, layer plus vacuum. The rule, for every member: c0 is the experimental c
of the member's bulk 2H polytype (two layers per bulk cell, so a single layer in a cell
that tall keeps about one bulk period plus one van der Waals gap, ~9 Å, of vacuum). For
MoS2 the bundled data fix c0 = 12.30 Å, which is that rule's value (bulk 2H-MoS2:
12.29-12.30 Å).

Sources (the non-MoS2 members; MoS2's constants come from its dataset, not from here):

- ``a0`` and ``d`` (half the X-X thickness): PBE relaxations of the free-standing 2H
  monolayers in the Computational 2D Materials Database, F. A. Rasmussen and
  K. S. Thygesen, J. Phys. Chem. C 119, 13169 (2015) (PBE, 18×18×1 k-points, forces
  < 0.01 eV/Å; continued as the C2DB, S. Haastrup et al., 2D Mater. 5, 042002 (2018)):
  a = 3.18 (WS2), 3.32 (MoSe2), 3.32 (WSe2), 3.55 Å (MoTe2); X-X thickness 3.15, 3.34,
  3.36, 3.60 Å. Checked here with GPAW (PBE, PW 600 eV, 12×12×1, these cells): in-plane
  stress within ±0.4 N/m (a0 within 0.01 Å of GPAW's own minimum) and at most 0.06 eV/Å
  on the chalcogens.
- ``c0``: experimental bulk 2H lattice parameters -- WS2 12.32 Å and WSe2 12.96 Å
  (W. J. Schutte, J. L. de Boer, F. Jellinek, J. Solid State Chem. 70, 207 (1987));
  MoSe2 12.93 Å (P. B. James, M. T. Lavik, Acta Cryst. 16, 1183 (1963)); MoTe2
  13.96 Å (D. Puotinen, R. E. Newnham, Acta Cryst. 14, 691 (1961)).
- ``pbe_gap_eV``, for checks only: the PBE gap without spin-orbit coupling of the
  unstrained monolayer (direct, at K): WS2 1.81, MoSe2 1.44, WSe2 1.55, MoTe2 1.07 eV.
  Published PBE values scatter by a few hundredths of an eV between codes and lattice
  constants (e.g. the 2DSdb, materialsdb.cn/2dsdb: WS2 1.809 eV at a = 3.189 Å); GPAW
  here (PW 500 eV, 9×9×1) gives 1.83, 1.43, 1.55 and 1.07 eV. Spin-orbit coupling lowers
  the W compounds' gaps by ~0.3 eV; the oracles run without it, like the MoS2 data.

Why not WTe2. Bulk WTe2 is never 2H: it crystallises in the distorted Td (orthorhombic)
phase, and its monolayer's ground state is 1T'. A 2H-WTe2 monolayer is
a metastable phase no one has made, so there is no experimental 2H cell for c0 and no
measurement to hold a 2H gap against; its data are not as sound as the others', and it
is left out. 2H-MoTe2, by contrast, is the stable bulk phase at room temperature and
its monolayer is made and measured, so it is in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pymatgen.core import Lattice, Structure

from agent.core.errors import ConfigError, DesignError
from agent.core.materials.base import AppliedField, Material, ReferenceCell, Symmetry, register_material
from agent.core.materials.datasets import available_datasets, load_dataset
from agent.core.observations import Observations
from agent.core.space import Constraint, DesignSpace, Parameter

__all__ = [
    "EFIELD_KEY",
    "MEMBERS",
    "MIN_VACUUM",
    "MOSE2",
    "MOTE2",
    "MX2",
    "SYMMETRIES",
    "WS2",
    "WSE2",
    "Convention",
    "cell_gram_determinant",
    "cell_is_valid",
    "layer_spacing",
    "mx2_material",
]

Convention = Literal["fractional", "cartesian"]

EFIELD_KEY = "efield_V_per_A"
# Smallest chalcogen...chalcogen vacuum between periodic images we accept. 3 Å is about
# the S–S van der Waals contact distance (Se and Te are larger, so for them it is a looser
# floor): below it neighbouring layers touch and the cell no longer describes a monolayer.
MIN_VACUUM = 3.0

# Exact symmetries of the gap (columns a, b, c, alpha, beta, gamma, efield), the same for
# every member: relabelling the in-plane vectors a <-> b swaps alpha and beta (the mirror
# image under a vertical mirror of the D3h layer); alpha -> 180° - alpha with beta ->
# 180° - beta reverses the in-plane tilt of c (the crystal turned by C2 about the normal).
# Both keep the box: a and b share bounds, alpha and beta are centred on 90°.
SYMMETRIES = (
    Symmetry("swap a,b (and alpha,beta)", (1, 0, 2, 4, 3, 5, 6)),
    Symmetry("reverse the tilt of c", (0, 1, 2, 3, 4, 5, 6), (3, 4)),
)


# -- geometry shared by the family ---------------------------------------------------
def cell_gram_determinant(alpha: Any, beta: Any, gamma: Any) -> np.ndarray:
    """``det`` of the metric of unit cell vectors; positive iff the angles form a 3-D cell."""
    ca, cb, cg = (np.cos(np.radians(np.asarray(t, dtype=np.float64))) for t in (alpha, beta, gamma))
    return np.asarray(1.0 - ca**2 - cb**2 - cg**2 + 2.0 * ca * cb * cg)


def cell_is_valid(X: np.ndarray) -> np.ndarray:
    """Mask of rows whose angle triple (columns 3..5) is a real, non-degenerate cell."""
    ang = np.asarray(X, dtype=np.float64)[:, 3:6]
    in_range = ((ang > 0.0) & (ang < 180.0)).all(axis=1)
    return np.asarray(in_range & (cell_gram_determinant(*ang.T) > 0.0))


def layer_spacing(X: np.ndarray) -> np.ndarray:
    """Height of the cell along the layer normal, V/(a b sin γ) = c √G / sin γ, in Å.

    NaN where the angles do not form a cell, so comparisons against it come out False.
    """
    arr = np.asarray(X, dtype=np.float64)
    gram = cell_gram_determinant(arr[:, 3], arr[:, 4], arr[:, 5])
    sin_g = np.sin(np.radians(arr[:, 5]))
    ok = cell_is_valid(arr) & (arr[:, 2] > 0.0)
    h = np.full(len(arr), np.nan)
    h[ok] = arr[ok, 2] * np.sqrt(gram[ok]) / sin_g[ok]
    return h


@dataclass(frozen=True)
class MX2:
    """One member of the family: ``metal`` + 2 ``chalcogen`` in the 2H monolayer.

    ``a0``: unstrained in-plane lattice constant (Å); ``c0``: unstrained cell height,
    layer + vacuum (Å; see the module docstring for the rule); ``d``: height of each
    chalcogen plane above/below the metal plane in the unstrained cell (Å, half the X-X
    thickness); ``pbe_gap_eV``: the published PBE gap without spin-orbit coupling of the
    unstrained monolayer, for checks (``None`` where the unstrained cell is not a PBE
    relaxation, as for MoS2, whose constants are its data's).
    """

    name: str
    metal: str
    chalcogen: str
    a0: float
    c0: float
    d: float
    pbe_gap_eV: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < 2.0 * self.d < self.c0 or self.a0 <= 0.0:
            raise ConfigError(f"MX2 member {self.name!r}: needs a0 > 0 and a layer (2 d) thinner than c0")

    @property
    def formula(self) -> str:
        return f"{self.metal}{self.chalcogen}2"

    @functools.cached_property
    def _shape(self) -> DesignSpace:
        """The default space, kept only to check the shape of design points."""
        return self.space()

    def reference_cell(self) -> ReferenceCell:
        """The unstrained hexagonal cell strain is measured against."""
        return ReferenceCell((self.a0, self.a0, self.c0), (90.0, 90.0, 120.0))

    def space(
        self, *, lower: Mapping[str, float] | None = None, upper: Mapping[str, float] | None = None
    ) -> DesignSpace:
        """The design space: ±20 % around the unstrained cell, the field in [-1, 1] V/Å.

        ``lower``/``upper`` override single bounds by parameter name (MoS2's data sit a
        hair outside their nominal box; see `agent.core.materials.mos2.mos2_space`).
        """
        lo = {"a": 0.8 * self.a0, "b": 0.8 * self.a0, "c": 0.8 * self.c0}
        hi = {"a": 1.2 * self.a0, "b": 1.2 * self.a0, "c": 1.2 * self.c0}
        lo |= {"alpha": 72.0, "beta": 72.0, "gamma": 96.0, "efield": -1.0} | dict(lower or {})
        hi |= {"alpha": 108.0, "beta": 108.0, "gamma": 144.0, "efield": 1.0} | dict(upper or {})
        described = (
            ("a", "Å", "lattice constant a (strained)"),
            ("b", "Å", "lattice constant b (strained)"),
            ("c", "Å", "lattice constant c (layer + vacuum)"),
            ("alpha", "deg", "angle between b and c"),
            ("beta", "deg", "angle between a and c"),
            ("gamma", "deg", "angle between a and b (in-plane)"),
            ("efield", "V/Å", "external field along the layer normal"),
        )
        unknown = sorted((set(lower or {}) | set(upper or {})) - set(lo))
        if unknown:
            raise ConfigError(f"MX2 member {self.name!r}: no parameters {unknown} to re-bound")
        params = tuple(Parameter(n, lo[n], hi[n], unit, text) for n, unit, text in described)
        constraints = (
            Constraint(
                "cell",
                cell_is_valid,
                "alpha, beta, gamma do not form a cell (need each in (0, 180) and a positive "
                "Gram determinant 1 - cos²α - cos²β - cos²γ + 2 cosα cosβ cosγ)",
            ),
            Constraint(
                "layer_spacing",
                self.leaves_vacuum,
                f"layer spacing V/(a b sin γ) leaves less than {MIN_VACUUM:g} Å of vacuum "
                f"between the {self.chalcogen} planes of neighbouring layers",
            ),
        )
        return DesignSpace(self.name, params, constraints)

    def vacuum_gap(self, X: np.ndarray, convention: Convention = "fractional") -> np.ndarray:
        """Chalcogen...chalcogen gap between neighbouring layers along the normal (Å).

        Fractional: the slab is 2 d/c0 of the spacing h, so the gap is h (1 - 2 d/c0).
        Cartesian: the slab is 2 d thick whatever the cell, so the gap is h - 2 d.
        """
        h = layer_spacing(X)
        if convention == "fractional":
            return np.asarray(h * (1.0 - 2.0 * self.d / self.c0))
        if convention == "cartesian":
            return np.asarray(h - 2.0 * self.d)
        raise ConfigError(f"unknown atomic-position convention {convention!r}; use 'fractional' or 'cartesian'")

    def leaves_vacuum(self, X: np.ndarray) -> np.ndarray:
        """Mask of rows whose layers keep at least `MIN_VACUUM` apart (fractional convention,
        the space's; the cartesian builder re-checks its own, stricter, gap)."""
        with np.errstate(invalid="ignore"):
            return np.asarray(self.vacuum_gap(X, "fractional") >= MIN_VACUUM)

    def _point(self, x: np.ndarray) -> np.ndarray:
        point = self._shape.as_array(x)
        if len(point) != 1:
            raise DesignError(f"expected one {self.formula} design point, got {len(point)}")
        return point

    def metadata(self, x: np.ndarray) -> dict[str, Any]:
        """The non-geometric part of a design point: the applied field in V/Å."""
        return {EFIELD_KEY: float(self._point(x)[0, 6])}

    def build(self, x: np.ndarray, convention: Convention = "fractional") -> Structure:
        """One physical design point -> `Structure` (metal + 2 chalcogens) in the strained cell.

        The cell must be a real cell and leave `MIN_VACUUM` between layers under the
        chosen convention, else `DesignError`. Box bounds are *not* checked here, so
        off-grid points can still be built.
        """
        point = self._point(x)
        if not np.isfinite(point).all():
            raise DesignError(f"{self.formula} design point has non-finite values: {point[0].tolist()}")
        a, b, c, alpha, beta, gamma, efield = (float(v) for v in point[0])
        if min(a, b, c) <= 0.0 or not cell_is_valid(point)[0]:
            raise DesignError(
                f"degenerate {self.formula} cell: a={a:g} b={b:g} c={c:g} Å, "
                f"alpha={alpha:g} beta={beta:g} gamma={gamma:g}° do not form a cell"
            )
        gap = float(self.vacuum_gap(point, convention)[0])
        if gap < MIN_VACUUM:
            raise DesignError(
                f"{self.formula} cell too flat for a monolayer: it leaves {gap:.3g} Å of vacuum between the "
                f"{self.chalcogen} planes of neighbouring layers ({convention} convention), below {MIN_VACUUM:g} Å"
            )
        lattice = Lattice.from_parameters(a, b, c, alpha, beta, gamma, vesta=True)
        species = [self.metal, self.chalcogen, self.chalcogen]
        props = {EFIELD_KEY: efield}
        if convention == "fractional":
            dz = self.d / self.c0
            frac = [[1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5 + dz], [2 / 3, 1 / 3, 0.5 - dz]]
            return Structure(lattice, species, frac, properties=props)
        m = lattice.matrix
        normal = np.cross(m[0], m[1])
        normal /= np.linalg.norm(normal)
        metal = lattice.get_cartesian_coords([1 / 3, 2 / 3, 0.5])
        mid = lattice.get_cartesian_coords([2 / 3, 1 / 3, 0.5])
        cart = [metal, mid + self.d * normal, mid - self.d * normal]
        return Structure(lattice, species, cart, coords_are_cartesian=True, properties=props)

    def build_cartesian(self, x: np.ndarray) -> Structure:
        return self.build(x, "cartesian")


def mx2_material(
    member: MX2,
    *,
    space: DesignSpace | None = None,
    dataset: Callable[[], Observations] | None = None,
    dataset_bounds_targets: bool = True,
    description: str | None = None,
) -> Material:
    """The `Material` of ``member``: its space (default `MX2.space`), the gap target,
    both conventions (fractional first, the default), the field along the third lattice
    vector, its unstrained cell and the family's symmetries; ``dataset`` if it has data."""
    build = member.build  # one bound method: a Material's first convention must *be* its build
    return Material(
        name=member.name,
        description=description or f"monolayer 2H-{member.formula}: PBE band gap under strain and out-of-plane field",
        space=space if space is not None else member.space(),
        target="gap",
        target_unit="eV",
        target_lower_bound=0.0,  # a band gap is non-negative
        build=build,
        metadata=member.metadata,
        dataset=dataset,
        dataset_bounds_targets=dataset_bounds_targets,
        symmetries=SYMMETRIES,
        conventions={"fractional": build, "cartesian": member.build_cartesian},
        applied_field=AppliedField(EFIELD_KEY, axis=2),
        reference_cell=member.reference_cell(),
    )


def _bundled(name: str) -> Callable[[], Observations] | None:
    """The loader of the bundled dataset named like the member (WS2's GPAW replay table,
    `agent.core.materials.datasets`), or None: no data."""
    return functools.partial(load_dataset, name) if name in available_datasets() else None


# -- the members besides MoS2 (agent.core.materials.mos2) ----------------------------------
WS2 = MX2("ws2", "W", "S", a0=3.18, c0=12.32, d=1.575, pbe_gap_eV=1.81)
MOSE2 = MX2("mose2", "Mo", "Se", a0=3.32, c0=12.93, d=1.67, pbe_gap_eV=1.44)
WSE2 = MX2("wse2", "W", "Se", a0=3.32, c0=12.96, d=1.68, pbe_gap_eV=1.55)
MOTE2 = MX2("mote2", "Mo", "Te", a0=3.55, c0=13.96, d=1.80, pbe_gap_eV=1.07)
MEMBERS: tuple[MX2, ...] = (WS2, MOSE2, WSE2, MOTE2)

# Last, so that everything above exists when registering imports the built-in modules
# (agent.core.materials.mos2 imports this module and registers MoS2 from its prototype).
for _member in MEMBERS:
    # WS2's replay table samples the space uniformly, too thinly to bound the targets asked of it
    register_material(mx2_material(_member, dataset=_bundled(_member.name), dataset_bounds_targets=False))
