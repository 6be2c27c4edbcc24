"""One GPAW band-gap calculation for one design point of a material, run as its own process.

``python -m oracles.gpaw_job INPUT.json OUTPUT.json``

Why a subprocess entry point: a DFT job can take minutes, eat gigabytes or crash in C
code; running each one in a fresh interpreter lets the caller put a timeout and a memory
limit on it and keeps a crash from taking the driver down. Everything the job needs is
in INPUT (material, design, atomic-position convention, numerical settings) and
everything it learns goes to OUTPUT, written atomically (temp file + rename) so a reader
never sees a half-written result. The GPAW text log stays next to OUTPUT as ``gpaw.txt``.

The material is looked up by name (`get_material`): the job builds what its builder
builds and applies the field its metadata carries, along the axis it declares. Being a
fresh interpreter, the job knows the materials registered on import (built-in, e.g. the
MX2 family, and plugins'); one registered only inside the caller is unknown here: an
infrastructure error. Left out, ``material`` is ``mos2`` (older inputs were MoS2's),
``convention`` its default and ``kpts`` its mesh (`oracles.kpoints`).

INPUT::

    {"material": "mos2", "convention": "fractional",
     "design": {"a": 3.16, "b": 3.16, "c": 12.3, "alpha": 90, "beta": 90,
                "gamma": 120, "efield": 0.0},
     "settings": {"ecut_eV": 350, "kpts": [9, 9, 1], "smearing_eV": 0.01,
                  "spin": false, "xc": "PBE"}}

OUTPUT: ``{"gap_eV", "energy_eV", "formula_units", "converged", "wall_s", "gpaw_version", "settings", "convention",
"error"}`` where ``error`` is null or ``{"class": "physics"|"infrastructure",
"message"}``: "physics" means the calculation ran but gave no usable answer (SCF did not
converge, the design is not a buildable cell); "infrastructure" means the machinery
failed (GPAW missing, bad input file, out of memory) and a retry elsewhere may succeed.

The pure helpers (`parse_input`, `job_atoms`, `gap_from_eigenvalues`, `write_result`)
import no GPAW, so they can be tested and used on machines without it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pymatgen.core import Element

from agent.core.atomic import write_text
from agent.core.errors import ConfigError, DesignError, UnknownNameError
from agent.core.materials import Material, get_material
from oracles.gpaw_settings import JobSettings, parse_settings
from oracles.kpoints import kpoint_mesh

if TYPE_CHECKING:
    from ase import Atoms

__all__ = [
    "JobInput",
    "JobSettings",
    "formula_units",
    "gap_from_eigenvalues",
    "job_atoms",
    "main",
    "parse_input",
    "run_job",
    "write_result",
]

LOG_NAME = "gpaw.txt"
SPECTRUM_NAME = "eigenvalues.json"  # (spins, k-points, bands) eigenvalues, k weights, Fermi level
# Bands beyond the occupied ones GPAW counts from its setups' valence electrons (``nbands=-n``):
# 7 empty leave room for the smearing; all but the top 4 are converged, so the CBM is too. An
# MX2 member has 26 (M 14 + 2 X 6): 13 + 7 = 20 bands, 16 converged, as MoS2 always ran.
N_EMPTY_BANDS = 7
N_UNCONVERGED_BANDS = 4

ErrorClass = Literal["physics", "infrastructure"]


@dataclass(frozen=True)
class JobInput:
    """A validated job: the material, its design (physical units, in the order of the
    material's design space), the atomic-position convention and the numerical settings."""

    material: str
    design: tuple[float, ...]
    convention: str | None = None
    settings: JobSettings = field(default_factory=JobSettings)

    def design_point(self) -> np.ndarray:
        """The design as the ``(d,)`` array the material's builder takes."""
        return np.asarray(self.design, dtype=np.float64)


class JobFailed(Exception):
    """Internal: a failure already classified as physics or infrastructure."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class: ErrorClass = error_class


# -- input -------------------------------------------------------------------------
def parse_input(raw: Mapping[str, Any]) -> JobInput:
    """Validate an INPUT object; `ConfigError` for bad settings, `DesignError` for bad cells.

    The material's builder runs here, before any DFT code is touched: a degenerate or
    flattened cell does not fail fast in a plane-wave code, it can allocate huge grids
    first (one once took 12 GB). The builder applies the material's rules (MoS2: a real
    cell, and vacuum between layers under the convention asked for).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"job input must be a JSON object, got {type(raw).__name__}")
    material = _material(raw.get("material", "mos2"))
    names = material.space.names
    design = raw.get("design")
    if not isinstance(design, Mapping):
        raise ConfigError(f"job input needs a 'design' object with keys {names}")
    missing = [k for k in names if k not in design]
    if missing:
        raise DesignError(f"design is missing {missing}")
    try:
        values = tuple(float(design[k]) for k in names)
    except (TypeError, ValueError) as exc:
        raise DesignError(f"design values must be numbers: {dict(design)}") from exc
    if not all(math.isfinite(v) for v in values):
        raise DesignError(f"design has non-finite values: {dict(zip(names, values))}")
    convention = material.convention(raw.get("convention"))
    try:
        structure = material.structure(np.asarray(values), convention)
    except DesignError as exc:
        raise DesignError(f"{exc}; refused before launching DFT: {dict(zip(names, values))}") from None
    settings = parse_settings(raw.get("settings"), kpoint_mesh(material, structure))
    return JobInput(material.name, values, convention, settings)


def _material(name: Any) -> Material:
    if not isinstance(name, str):
        raise ConfigError(f"'material' must be a material's name, got {name!r}")
    try:
        return get_material(name)
    except UnknownNameError as exc:
        raise ConfigError(f"{exc} (a material must register itself when its module is imported)") from None


def job_atoms(job: JobInput) -> tuple[Atoms, float, list[float]]:
    """The atoms GPAW runs on, the field in V/Å and its Cartesian direction.

    The structure is the material's (its builder, under the job's convention), the field
    its metadata's; the direction is the unit normal of the lattice vectors other than
    the field's axis (MoS2: exactly z), along which GPAW's sawtooth is periodic. Without
    a declared field: 0 V/Å along z, which applies nothing.
    """
    from agent.core.structures import to_ase  # pymatgen -> ASE; loads ASE only for a job that runs

    material = get_material(job.material)
    x = job.design_point()
    structure = material.structure(x, job.convention)
    direction = [0.0, 0.0, 1.0]
    if material.applied_field is not None:
        axis = material.applied_field.axis
        m = structure.lattice.matrix
        normal = np.cross(m[(axis + 1) % 3], m[(axis + 2) % 3])
        direction = [float(v) for v in normal / np.linalg.norm(normal)]
    return to_ase(structure), material.field_strength(x), direction


# -- band gap ----------------------------------------------------------------------
def gap_from_eigenvalues(eigenvalues: Any, fermi_level: float | Sequence[float]) -> float:
    """Band gap (eV) from eigenvalues shaped (spins, k-points, bands) or (k-points, bands).

    A state is occupied when it lies below the Fermi level (one level, or one per spin).
    If the number of occupied bands differs between k-points of a spin channel, a band
    crosses the Fermi level: a metal, gap 0. Otherwise the gap is the lowest empty state
    minus the highest filled one over all k-points and both spins (indirect gaps count).
    Raises `ValueError` if no band is filled or none is empty (too few bands computed).
    """
    eps = np.asarray(eigenvalues, dtype=np.float64)
    if eps.ndim == 2:
        eps = eps[None]
    if eps.ndim != 3 or eps.size == 0:
        raise ValueError(f"eigenvalues must be (spins, kpts, bands), got shape {eps.shape}")
    fermi = np.broadcast_to(np.asarray(fermi_level, dtype=np.float64).ravel(), (eps.shape[0],))
    vbm, cbm = -np.inf, np.inf
    for s in range(eps.shape[0]):
        filled = eps[s] < fermi[s]
        n_occ = filled.sum(axis=1)
        if (n_occ != n_occ[0]).any():
            return 0.0
        n = int(n_occ[0])
        if n == 0 or n == eps.shape[2]:
            raise ValueError(f"spin {s}: {n} of {eps.shape[2]} bands below the Fermi level; need some of each")
        band = np.sort(eps[s], axis=1)
        vbm = max(vbm, float(band[:, n - 1].max()))
        cbm = min(cbm, float(band[:, n].min()))
    return max(cbm - vbm, 0.0)


# -- output ------------------------------------------------------------------------
def write_result(path: str | os.PathLike[str], result: Mapping[str, Any]) -> Path:
    """Write ``result`` as JSON to ``path`` atomically (`agent.core.atomic.write_text`).

    Serialised first, with NaN refused, so a bad result never replaces a good file.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_text(out, json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n")


def result_dict(
    *,
    gap: float | None,
    converged: bool,
    energy: float | None = None,
    formula_units: int | None = None,
    wall_s: float,
    gpaw_version: str | None,
    settings: JobSettings | Mapping[str, Any] | None,
    convention: str | None,
    error: tuple[ErrorClass, str] | None = None,
) -> dict[str, Any]:
    """The OUTPUT object, in one place so every exit path writes the same keys."""
    sett = asdict(settings) if isinstance(settings, JobSettings) else (dict(settings) if settings else None)
    if sett is not None and "kpts" in sett:
        sett["kpts"] = list(sett["kpts"])
    if sett is not None and isinstance(sett.get("convergence"), list | tuple):
        sett["convergence"] = {str(k): float(v) for k, v in sett["convergence"]}
    return {
        "gap_eV": gap,
        "energy_eV": energy,
        "formula_units": formula_units,
        "converged": converged,
        "wall_s": round(wall_s, 3),
        "gpaw_version": gpaw_version,
        "settings": sett,
        "convention": convention,
        "error": None if error is None else {"class": error[0], "message": error[1]},
    }


# -- the DFT run -------------------------------------------------------------------
def run_job(job: JobInput, folder: str | os.PathLike[str]) -> tuple[float, float, int, str]:
    """Run GPAW on ``job`` in ``folder``; returns (gap in eV, total energy in eV, formula
    units in the cell, GPAW version).

    The total energy is GPAW's extrapolated-to-zero-width free energy of the cell (the
    field's work on the electrons included): what a strain energy is taken from
    (`strain_energy`), per formula unit so cells of one material compare.

    PW mode, periodic on all three axes (what the builder gives; PW needs them). The
    field (`job_atoms`) is GPAW's `ConstantElectricField` (V/Å, as in the design): a
    sawtooth whose jump sits at the cell boundary, in the vacuum the material's builder
    leaves there (MoS2: the layer is centred at fractional z = 1/2). Raises
    `JobFailed("physics", ...)` if the SCF does not converge.
    """
    try:
        # GPAW (optional, heavy) only here: the job's pure parts never load it
        import gpaw
        from gpaw import GPAW, PW, FermiDirac, KohnShamConvergenceError
        from gpaw.external import ConstantElectricField
    except ImportError as exc:
        raise JobFailed("infrastructure", f"GPAW is not importable ({exc}); run scripts/install_gpaw.sh") from exc

    s = job.settings
    atoms, efield, direction = job_atoms(job)
    if s.spin:
        # Start the transition metals (MoS2: Mo) with a moment so a magnetic solution can be found.
        moments = [float(Element(x).is_transition_metal) for x in atoms.get_chemical_symbols()]
        atoms.set_initial_magnetic_moments(moments)
    calc = GPAW(
        mode=PW(s.ecut_eV),
        xc=s.xc,
        kpts={"size": s.kpts, "gamma": True},
        occupations=FermiDirac(s.smearing_eV),
        spinpol=s.spin,
        nbands=-N_EMPTY_BANDS,
        convergence={"bands": -N_UNCONVERGED_BANDS, **dict(s.convergence)},
        maxiter=s.maxiter,
        external=ConstantElectricField(efield, direction) if efield != 0.0 else None,
        txt=str(Path(folder) / LOG_NAME),
    )
    atoms.calc = calc
    try:
        energy = float(atoms.get_potential_energy())
    except KohnShamConvergenceError as exc:
        raise JobFailed("physics", f"SCF did not converge in {s.maxiter} iterations ({exc!r})") from exc
    nspins = calc.get_number_of_spins()
    nk = len(calc.get_ibz_k_points())
    eps = np.array([[calc.get_eigenvalues(kpt=k, spin=sp) for k in range(nk)] for sp in range(nspins)])
    try:
        fermi: float | list[float] = float(calc.get_fermi_level())
    except ValueError:  # two Fermi levels (fixed magnetic moment)
        fermi = [float(f) for f in calc.get_fermi_levels()]
    # The whole spectrum stays beside the log: how the gap was read (eigenvalues, not a
    # smeared DOS) matters when comparing with another code's gaps.
    weights = [float(w) for w in calc.get_k_point_weights()]
    write_result(
        Path(folder) / SPECTRUM_NAME, {"eigenvalues_eV": eps.tolist(), "k_weights": weights, "fermi_eV": fermi}
    )
    units = formula_units(atoms.get_chemical_symbols())
    return gap_from_eigenvalues(eps, fermi), energy, units, str(gpaw.__version__)


def formula_units(symbols: Sequence[str]) -> int:
    """Formula units in a cell of these atoms: the greatest common divisor of the element
    counts (MX2 monolayer: M1X2 -> 1)."""
    counts = [symbols.count(s) for s in set(symbols)]
    return math.gcd(*counts) if counts else 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: read INPUT, run, write OUTPUT. Exit 0 when OUTPUT was written, else 2.

    Every failure still writes OUTPUT (with ``error`` set), so the caller can tell a
    physics failure from a broken machine without parsing tracebacks.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m oracles.gpaw_job INPUT.json OUTPUT.json", file=sys.stderr)
        return 2
    in_path, out_path = Path(args[0]), Path(args[1])
    start = time.perf_counter()
    job: JobInput | None = None
    raw: Any = None
    try:
        raw = json.loads(in_path.read_text())
        job = parse_input(raw)
        gap, energy, units, version = run_job(job, out_path.parent)
        result = result_dict(
            gap=gap,
            energy=energy,
            formula_units=units,
            converged=True,
            wall_s=time.perf_counter() - start,
            gpaw_version=version,
            settings=job.settings,
            convention=job.convention,
        )
    except JobFailed as exc:
        result = _failure(exc.error_class, str(exc), start, job, raw)
    except DesignError as exc:
        result = _failure("physics", str(exc), start, job, raw)
    except (OSError, ValueError, ConfigError, MemoryError) as exc:
        result = _failure("infrastructure", f"{type(exc).__name__}: {exc}", start, job, raw)
    write_result(out_path, result)
    return 0


def _failure(cls: ErrorClass, message: str, start: float, job: JobInput | None, raw: Any) -> dict[str, Any]:
    settings = job.settings if job else (raw.get("settings") if isinstance(raw, Mapping) else None)
    convention = job.convention if job else (raw.get("convention") if isinstance(raw, Mapping) else None)
    return result_dict(
        gap=None,
        converged=False,
        wall_s=time.perf_counter() - start,
        gpaw_version=_gpaw_version(),
        settings=settings if isinstance(settings, (JobSettings, Mapping)) else None,
        convention=convention if isinstance(convention, str) else None,
        error=(cls, message),
    )


def _gpaw_version() -> str | None:
    try:
        import gpaw  # optional: a failure report may come from a machine without GPAW
    except ImportError:
        return None
    return str(gpaw.__version__)


if __name__ == "__main__":
    sys.exit(main())
