"""The k-point mesh of a DFT job, one rule for both DFT back ends (GPAW and VASP).

Why a rule instead of a number. The oracles used to run every design on 9×9×1, the mesh
of the MatDesINNe MoS2 data; a material with another cell needs its own. The rule keeps
the data's protocol -- *one* mesh for every design of a material, so two designs' gaps
differ by their cells, never by their sampling -- and derives that mesh from the
material's unstrained cell (`Material.reference_cell`; a material without one: from the
structure at hand):

- along each periodic lattice vector, ``n = ceil(|b| / KSPACING)`` with ``b`` the
  reciprocal vector (2π included), rounded up to a multiple of 3. ``KSPACING`` = 0.27 Å⁻¹
  gives MoS2's unstrained cell (a = 3.16 Å, |b| = 2.296 Å⁻¹) its 9, and 9 to every other
  MX2 member (a0 = 3.18-3.55 Å). A Γ-centred mesh of 3m points holds K = (1/3, 1/3) of a
  hexagonal lattice, where the 2H MX2 band edges sit (without it the gap comes out tenths
  of an eV too large); for other lattices the rounding only adds points;
- along the lattice vector of the material's applied field: 1. `AppliedField` obliges the
  builder to leave vacuum there (GPAW's sawtooth jumps at that boundary), so that vector
  joins layers separated by vacuum, across which electrons do not disperse. A material
  without a field gets a k-mesh along all three vectors (correct, if wasteful for a layer).
"""

from __future__ import annotations

import math

import numpy as np
from pymatgen.core import Lattice, Structure

from agent.core.materials import Material

__all__ = ["KSPACING", "kpoint_mesh", "mesh_for_lattice"]

KSPACING = 0.27  # Å⁻¹, largest spacing of the mesh along a periodic reciprocal vector (2π included)


def mesh_for_lattice(lattice: Lattice, periodic: tuple[bool, bool, bool] = (True, True, True)) -> tuple[int, int, int]:
    """The Γ-centred mesh of ``lattice`` under the module's rule: 3·⌈|b|/(3·KSPACING)⌉ along
    a periodic vector, 1 along one that is not."""
    lengths = np.asarray(lattice.reciprocal_lattice.abc, dtype=np.float64)  # 2π included
    n = [3 * max(1, math.ceil(float(b) / (3.0 * KSPACING))) if p else 1 for b, p in zip(lengths, periodic, strict=True)]
    return n[0], n[1], n[2]


def kpoint_mesh(material: Material, structure: Structure) -> tuple[int, int, int]:
    """The mesh for a design of ``material`` (built as ``structure``): from the material's
    unstrained cell when it declares one (the same mesh for all its designs), else from
    ``structure``; one k-point along its applied field's lattice vector."""
    periodic = [True, True, True]
    if material.applied_field is not None:
        periodic[material.applied_field.axis] = False
    ref = material.reference_cell
    lattice = structure.lattice if ref is None else Lattice.from_parameters(*ref.lengths, *ref.angles)
    return mesh_for_lattice(lattice, (periodic[0], periodic[1], periodic[2]))
