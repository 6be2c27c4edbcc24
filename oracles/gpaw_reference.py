"""The unstrained reference job of a GPAW work folder: what strain energies are measured from.

Why a job of its own. A strain energy is a total energy less the unstrained cell's under
the *same* material, convention and numerical settings (plane-wave energies of two
setting sets do not compare). So the oracle runs that cell once per work folder and
normalised setting set (`oracles.gpaw_settings.parse_settings`: ``{}`` and the
production values written out are one set), in a folder named ``0-reference-<key>`` that
sorts before every design's job and is launched first, like any queued job.

A design's result is final only with its strain energy, so a finished design waits while
its reference is queued or running. The wait is bounded: the reference has the jobs'
wall time, and when its machinery fails (the process died, its launcher died, it ran past
its wall time, it could not be started) the folder is set aside as
``…-failed-<n>`` and the reference queued again, at most `MAX_ATTEMPTS` times. After that,
or when the unstrained cell itself gives no answer (SCF did not converge), results are
final without ``strain_energy`` and say why: a paid-for gap is never held back for good.
Which reference a result needs comes from its own ``input.json`` (a work folder may hold
jobs of several setting sets).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_json
from agent.core.errors import ConfigError
from agent.core.materials import Material
from oracles.base import ErrorClass, Handle, JobStatus, Result
from oracles.gpaw_settings import parse_settings
from oracles.kpoints import kpoint_mesh

__all__ = ["MAX_ATTEMPTS", "PREFIX", "StrainReference", "energy_per_unit"]

PREFIX = "0-reference-"  # sorts before the jobs' hex time stamps, so the reference launches first
MAX_ATTEMPTS = 3  # launches of one reference before results go on without a strain energy


def energy_per_unit(out: Path) -> float | None:
    """A finished job's total energy per formula unit (eV), or None (failed, unreadable, older)."""
    try:
        data = json.loads(out.read_text())
        energy, units = data.get("energy_eV"), data.get("formula_units")
    except (OSError, ValueError, AttributeError):
        return None
    if not data.get("converged") or not isinstance(energy, int | float) or not isinstance(units, int) or units < 1:
        return None
    return float(energy) / units


class StrainReference:
    """The reference jobs of one work folder for ``material`` (its `Material.unstrained_design`)
    under ``convention``. ``status``: the oracle's own reading of a job folder (dead process,
    stale lock, wall time), so a reference is judged exactly as a design's job is."""

    def __init__(
        self, workdir: Path, material: Material, convention: str | None, unstrained: np.ndarray, name: str
    ) -> None:
        self.workdir, self.material, self.convention, self.name = workdir, material, convention, name
        self.design = dict(zip(material.space.names, (float(v) for v in unstrained), strict=True))
        self._mesh = kpoint_mesh(material, material.structure(unstrained, convention))

    def folder(self, settings: Mapping[str, Any] | None) -> Path:
        """The reference folder of this setting set (normalised, so equal sets share one)."""
        normal = parse_settings(settings or {}, self._mesh)
        key = {"material": self.material.name, "convention": self.convention, "settings": repr(normal)}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.workdir / f"{PREFIX}{digest[:16]}"

    def queue(self, settings: Mapping[str, Any] | None) -> None:
        """Write the reference's ``input.json`` unless it is there (the queue starts it)."""
        folder = self.folder(settings)
        if (folder / "input.json").exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        payload = {"material": self.material.name, "design": self.design, "convention": self.convention}
        write_json(folder / "input.json", payload | {"settings": dict(settings or {})}, indent=1)

    def energy(self, job_folder: Path, status: Callable[[Handle], Result]) -> tuple[float | None, str | None, Path]:
        """For the job in ``job_folder``: (reference energy per formula unit, None, folder) when
        known; (None, None, folder) while the reference is queued or running; (None, why, folder)
        when there will be none."""
        try:
            settings = json.loads((job_folder / "input.json").read_text()).get("settings")
            folder = self.folder(settings)
        except (OSError, ValueError, AttributeError, ConfigError) as exc:
            return None, f"the job's input.json names no setting set a reference can be run with ({exc})", job_folder
        if not (folder / "input.json").exists():
            self.queue(settings)  # a work folder from before references: queue it now
            return None, None, folder
        result = status(Handle(self.name, folder.name, self.design, workdir=str(folder)))
        if not result.status.terminal:
            return None, None, folder
        if result.ok and (energy := energy_per_unit(folder / "output.json")) is not None:
            return energy, None, folder
        failed = sorted(self.workdir.glob(f"{folder.name}-failed-*"))
        if result.error_class is ErrorClass.INFRASTRUCTURE and len(failed) + 1 < MAX_ATTEMPTS:
            with contextlib.suppress(FileNotFoundError, FileExistsError):  # another poller set it aside first
                folder.rename(folder.with_name(f"{folder.name}-failed-{len(failed) + 1}"))
            self.queue(settings)
            return None, None, folder
        why = result.message or (result.status.value if isinstance(result.status, JobStatus) else "failed")
        tries = f" after {len(failed) + 1} attempts" if result.error_class is ErrorClass.INFRASTRUCTURE else ""
        return None, f"the unstrained cell's job ({folder}) gave no energy{tries}: {why}", folder
