"""The numerical settings of one GPAW job, validated: one place for the job and its oracle.

Why a module of its own: the job (`oracles.gpaw_job`) needs them to run, and the oracle
(`oracles.gpaw`) needs the same normalised form to name the unstrained reference job a
set of settings belongs to (`oracles.gpaw_reference`): ``{}`` and the production values
written out are one setting set, one reference. Pure: no GPAW import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.core.errors import ConfigError

__all__ = ["CONVERGENCE_KEYS", "JobSettings", "parse_settings"]


@dataclass(frozen=True)
class JobSettings:
    """Numerical settings of one job; the defaults are the production ones."""

    ecut_eV: float = 350.0
    kpts: tuple[int, int, int] = (9, 9, 1)  # Γ-centred; `parse_input` fills in the material's mesh
    smearing_eV: float = 0.01  # Fermi-Dirac width
    spin: bool = False
    xc: str = "PBE"
    maxiter: int = 200
    # SCF stopping criteria beyond GPAW's defaults, among ``CONVERGENCE_KEYS`` (e.g. a
    # looser ``density`` for a large table); empty: GPAW's own
    convergence: tuple[tuple[str, float], ...] = ()


CONVERGENCE_KEYS = ("energy", "density", "eigenstates")  # GPAW's SCF criteria a job may set


def parse_settings(raw: Any, kpts_default: tuple[int, int, int]) -> JobSettings:
    """A job's ``settings`` object validated into `JobSettings` (``kpts_default``: the
    material's mesh, used when ``kpts`` is not given); `ConfigError` naming what is wrong."""
    base = JobSettings(kpts=kpts_default)
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise ConfigError(f"'settings' must be an object, got {type(raw).__name__}")
    known = {f for f in JobSettings.__dataclass_fields__}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown settings {unknown}; known: {sorted(known)}")
    try:
        ecut = float(raw.get("ecut_eV", base.ecut_eV))
        kpts_raw = raw.get("kpts", base.kpts)
        kpts = tuple(int(k) for k in kpts_raw)
        smearing = float(raw.get("smearing_eV", base.smearing_eV))
        maxiter = int(raw.get("maxiter", base.maxiter))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"malformed settings {dict(raw)}: {exc}") from exc
    spin = raw.get("spin", base.spin)
    xc = raw.get("xc", base.xc)
    if not (math.isfinite(ecut) and ecut > 0):
        raise ConfigError(f"ecut_eV must be a positive number, got {ecut}")
    if len(kpts) != 3 or min(kpts) < 1 or any(float(k) != int(k) for k in kpts_raw):
        raise ConfigError(f"kpts must be three positive integers, got {kpts_raw}")
    if not (math.isfinite(smearing) and smearing >= 0):
        raise ConfigError(f"smearing_eV must be a non-negative number, got {smearing}")
    if not isinstance(spin, bool):
        raise ConfigError(f"spin must be true or false, got {spin!r}")
    if not isinstance(xc, str) or not xc:
        raise ConfigError(f"xc must be a functional name, got {xc!r}")
    if maxiter < 1:
        raise ConfigError(f"maxiter must be positive, got {maxiter}")
    convergence = _parse_convergence(raw.get("convergence", {}))
    return JobSettings(ecut, (kpts[0], kpts[1], kpts[2]), smearing, spin, xc, maxiter, convergence)


def _parse_convergence(raw: Any) -> tuple[tuple[str, float], ...]:
    """``{"density": 1e-3, ...}`` as sorted pairs, each key one of `CONVERGENCE_KEYS` and each
    value a positive number; `ConfigError` otherwise."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"convergence must be an object of {list(CONVERGENCE_KEYS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(CONVERGENCE_KEYS))
    if unknown:
        raise ConfigError(f"unknown convergence criteria {unknown}; known: {list(CONVERGENCE_KEYS)}")
    out = []
    for key in sorted(raw):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
            raise ConfigError(f"convergence {key!r} must be a positive number, got {value!r}")
        out.append((str(key), float(value)))
    return tuple(out)
