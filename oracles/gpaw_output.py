"""A finished GPAW job's ``output.json``, read as a `Result` (apart from `oracles.gpaw`, which
runs and watches the jobs: reading what one wrote needs no queue, no process and no clock)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oracles.base import ErrorClass, Handle, JobStatus, Result
from oracles.calibration import GapCalibration
from oracles.gpaw_reference import energy_per_unit

__all__ = ["parse_output"]


def parse_output(h: Handle, out: Path, prov: dict[str, Any], log: str, cal: GapCalibration | None) -> Result:
    """A finished job's ``output.json`` as a result: the gap (calibrated when ``cal``), GPAW's own
    gap and the energy per formula unit, or the job's own error and its class."""
    try:
        data = json.loads(out.read_text())
        converged = bool(data["converged"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Result.failure(h, ErrorClass.INFRASTRUCTURE, f"unreadable {out}: {exc}", provenance=prov, log=log)
    prov = prov | {k: data.get(k) for k in ("gpaw_version", "settings", "wall_s")}
    if converged and isinstance(data.get("gap_eV"), int | float):
        raw = float(data["gap_eV"])
        energy = energy_per_unit(out)
        extra = {} if energy is None else {"energy": energy}  # eV per formula unit; older outputs have none
        if cal is None:
            values = {"gap": raw, "gap_raw": raw} | extra
            return Result(h, JobStatus.COMPLETED, values=values, provenance=prov, log=log)
        prov["calibration"] = {"slope": cal.slope, "shift": cal.shift, "target": cal.target}
        values = {"gap": float(cal.apply(raw)), "gap_raw": raw} | extra
        return Result(h, JobStatus.COMPLETED, values=values, provenance=prov, log=log)
    err = data.get("error") or {}
    cls = ErrorClass.PHYSICS if err.get("class") == "physics" else ErrorClass.INFRASTRUCTURE
    return Result.failure(h, cls, str(err.get("message")), provenance=prov, log=log)
