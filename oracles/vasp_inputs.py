"""VASP input writing and vasprun.xml parsing for the `vasp` oracle, with no scheduler in sight.

The structure is the material's (`Material.structure`: its builder, in the atomic-position
convention asked for) and so is the field: its value comes from the material's metadata
and its direction from the material's `AppliedField`, so a second material is written as
itself, never as MoS2. The numerical set-up follows the MatDesINNe paper's (Fung et al.
2021) PBE set-up for strained monolayer MoS2 under a perpendicular field: plane-wave
cut-off 500 eV, spin polarised, a Γ-centred Monkhorst-Pack mesh (9×9×1 for MoS2), and
the field applied through EFIELD with the dipole correction along the field's lattice
vector (IDIPOL; for MoS2 the third, the layer normal). The mesh is the material's
(`oracles.kpoints`: from its unstrained cell, the same for all its designs; 9×9×1 for
every MX2 member). Everything else comes from pymatgen's `MPStaticSet` (PBE POTCARs,
NSW = 0, LREAL = False, ...), so the remaining choices are the Materials Project's, not
ours -- including the bands: VASP's default NBANDS counts the POTCARs' valence electrons
and adds empty bands, so no material needs a number of its own. A material without an
applied field gets neither EFIELD nor the dipole correction.

Field units and sign. VASP's EFIELD is an *electric force field* on a unit positive test
charge, in eV/Å; for a charge of +e, 1 V/Å of field is 1 eV/Å of force, so the design's
field in V/Å is written unchanged. VASP applies it along the IDIPOL lattice vector (for
MoS2 the third, which coincides with z only when alpha = beta = 90°). For MoS2 the sign
cannot bias the target: the 2H monolayer is mirror-symmetric about its Mo plane (both
atomic-position conventions keep the S planes symmetric), so gap(E) = gap(-E).

POTCARs are licensed. Without a library (pymatgen's ``PMG_VASP_PSP_DIR`` unset) the
job folder gets ``POTCAR.spec`` (the symbols, one per line) instead of failing, so the
inputs can still be checked or completed on the cluster with ``pmg potcar``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import SETTINGS, Structure
from pymatgen.io.vasp.inputs import Kpoints
from pymatgen.io.vasp.sets import MPStaticSet

from agent.core.errors import DesignError
from agent.core.materials import Material
from oracles.base import ErrorClass
from oracles.kpoints import kpoint_mesh

__all__ = [
    "STATIC_INCAR",
    "RunOutcome",
    "dipole_centre",
    "field_incar",
    "has_potcar_library",
    "parse_vasprun",
    "static_input_set",
    "write_inputs",
]

# The paper's settings plus what a static gap calculation needs. ISMEAR 0 (Gaussian,
# small width) rather than MPStaticSet's tetrahedron: part of the design space is
# metallic (gap 0 at small c) and Gaussian smearing is safe for metals and insulators.
STATIC_INCAR: dict[str, Any] = {
    "ENCUT": 500,
    "ISPIN": 2,
    "ISMEAR": 0,
    "SIGMA": 0.05,
    "EDIFF": 1e-6,
    "NELM": 200,
    "LCHARG": False,
    "LWAVE": False,
}


def dipole_centre(structure: Structure, axis: int) -> list[float]:
    """DIPOL (direct coordinates) at the slab centre: the atoms' mean height along lattice vector ``axis``.

    The other components do not matter for IDIPOL = ``axis + 1``; 0.5 keeps them tidy. The
    mean is taken on fractional heights unwrapped around the first atom, so a layer
    straddling the cell boundary still gets its real centre.
    """
    z = np.asarray(structure.frac_coords[:, axis], dtype=np.float64)  # (n_sites,)
    z = z[0] + (z - z[0] + 0.5) % 1.0 - 0.5
    centre = [0.5, 0.5, 0.5]
    centre[axis] = float(np.round(np.mean(z), 12) % 1.0)
    return centre


def field_incar(structure: Structure, efield_V_per_A: float, axis: int) -> dict[str, Any]:
    """EFIELD along lattice vector ``axis`` with the dipole correction there (LDIPOL, IDIPOL, DIPOL)."""
    return {
        "LDIPOL": True,
        "IDIPOL": axis + 1,
        "EFIELD": float(efield_V_per_A),
        "DIPOL": dipole_centre(structure, axis),
    }


def static_input_set(
    structure: Structure,
    field: dict[str, Any],
    incar: dict[str, Any] | None = None,
    kpts: tuple[int, int, int] = (9, 9, 1),
) -> MPStaticSet:
    """`MPStaticSet` with the paper's settings, the field's tags (`field_incar`, or none),
    ``incar`` on top and the Γ-centred mesh ``kpts`` (`oracles.kpoints.kpoint_mesh`).

    A mesh of odd counts is written as Monkhorst-Pack, as it always was (for odd counts
    the same points); one with an even count as Γ-centred, which a shifted Monkhorst-Pack
    mesh would not be (it would miss Γ and K).
    """
    settings = STATIC_INCAR | field | dict(incar or {})
    mesh = Kpoints.monkhorst_automatic(kpts) if all(k % 2 for k in kpts) else Kpoints.gamma_automatic(kpts)
    return MPStaticSet(
        structure,
        user_incar_settings=settings,
        # documented as "dict or Kpoints", annotated as dict only
        user_kpoints_settings=mesh,  # type: ignore[arg-type]
        user_potcar_functional="PBE",
    )


def has_potcar_library() -> bool:
    return bool(SETTINGS.get("PMG_VASP_PSP_DIR"))


def write_inputs(
    folder: Path,
    design: dict[str, float],
    material: Material,
    convention: str | None = None,
    incar: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write INCAR, KPOINTS, POSCAR and POTCAR (or POTCAR.spec) for one design of ``material``; return the INCAR.

    ``convention``: one the material names (``None``: its default). Raises `DesignError`
    (from the material's builder) for a design it cannot build.
    """
    missing = [k for k in material.space.names if k not in design]
    if missing:
        raise DesignError(f"design lacks {missing} of material {material.name!r} (it has {sorted(design)})")
    x = material.space.as_array([design[k] for k in material.space.names])[0]
    structure = material.structure(x, convention)
    applied = material.applied_field
    field = {} if applied is None else field_incar(structure, material.field_strength(x), applied.axis)
    vis = static_input_set(structure, field, incar, kpoint_mesh(material, structure))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns that POTCAR.spec is no POTCAR
        vis.write_input(str(folder), potcar_spec=not has_potcar_library())
    return dict(vis.incar)


@dataclass
class RunOutcome:
    """What one vasprun.xml says: a converged gap, or why there is none."""

    gap_eV: float | None
    converged: bool
    error_class: ErrorClass | None = None
    message: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def _generator_start(head: str) -> datetime | None:
    """The run's start time from vasprun's <generator> block (VASP writes date and time)."""
    date = re.search(r'name="date"[^>]*>\s*([\d ]+?)\s*<', head)
    hms = re.search(r'name="time"[^>]*>\s*([\d:]+)\s*<', head)
    if not (date and hms):
        return None
    try:
        return datetime.strptime(f"{date[1]} {hms[1]}", "%Y %m %d %H:%M:%S")
    except ValueError:
        return None


def parse_vasprun(path: Path) -> RunOutcome:
    """Read a finished static run: converged -> gap; not converged -> physics; unreadable -> infrastructure.

    Only electronic convergence is asked for (NSW = 0, there are no ionic steps to
    converge). A missing, empty or truncated file (VASP killed mid-write, disk full) is
    an infrastructure fault: a rerun may well succeed.
    """
    from pymatgen.io.vasp import Vasprun  # heavy import; only when a result is read

    if not path.is_file():
        return RunOutcome(None, False, ErrorClass.INFRASTRUCTURE, f"{path.name} is missing in {path.parent}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # UnconvergedVASPWarning etc.: we classify ourselves
            run = Vasprun(str(path), parse_potcar_file=False, parse_dos=False, parse_projected_eigen=False)
    except Exception as exc:  # lxml's XMLSyntaxError for truncation; anything else is as bad
        return RunOutcome(
            None,
            False,
            ErrorClass.INFRASTRUCTURE,
            f"{path} is truncated or unreadable ({type(exc).__name__}: {exc})",
        )
    with open(path, errors="replace") as fh:
        start = _generator_start(fh.read(2000))
    wall = None if start is None else max(0.0, path.stat().st_mtime - start.timestamp())
    prov: dict[str, Any] = {
        "code": "vasp",
        "vasp_version": run.vasp_version,
        "vasprun_incar": {k: _plain(v) for k, v in run.incar.items()},
        "wall_s": wall,
        "electronic_steps": len(run.ionic_steps[-1]["electronic_steps"]) if run.ionic_steps else 0,
        "nelm": run.parameters.get("NELM"),
    }
    if not run.converged_electronic:
        msg = f"SCF not converged within NELM = {prov['nelm']} electronic steps"
        return RunOutcome(None, False, ErrorClass.PHYSICS, msg, prov)
    gap, _cbm, _vbm, _direct = run.eigenvalue_band_properties
    return RunOutcome(float(np.asarray(gap)), True, None, None, prov)


def _plain(value: Any) -> Any:
    """INCAR values as JSON-friendly Python (numpy scalars and arrays become plain numbers/lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
