"""DFT evidence: what a campaign measured with a local DFT code, re-read from the code's own files.

Why. A campaign's ledger says a design hit its target; for a real-DFT campaign the
evidence a scientist asks for is the calculation itself. For every hit measured by the
``gpaw`` oracle this module goes back to the job's folder (the handle carries it) and
re-reads the gap from GPAW's eigenvalues (``eigenvalues.json``, the whole spectrum the job
wrote beside its log) with the same rule the job used (`oracles.gpaw_job.gap_from_eigenvalues`),
the total energy from ``output.json`` and the job's own seconds, and sets them beside
what the ledger holds, so a disagreement (a file edited, a folder swapped) shows. The
summary adds what the campaign cost: oracle calls, DFT hours over every job (failures
included: they were paid for) and the campaign's wall time.

Nothing here runs DFT or writes files; a folder that is gone or unreadable is reported
as such, never raised: the report of an old campaign whose job folders were cleaned
still builds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from agent.campaign.ledger import LedgerRecord
from agent.campaign.state import CampaignState, diverse_hits, feasible_rows, ledger_arrays
from agent.core.targets import TargetRange
from oracles.gpaw_job import SPECTRUM_NAME, gap_from_eigenvalues

__all__ = ["campaign_dft", "dft_cost", "dft_evidence", "records_cost", "reread_gap"]

AGREE_EV = 1e-6  # re-read and recorded gaps agree within rounding of the JSON files


def reread_gap(folder: Path) -> tuple[float | None, str]:
    """The gap (eV, GPAW's own scale) re-read from a job folder's spectrum, or None and why not."""
    path = folder / SPECTRUM_NAME
    try:
        data = json.loads(path.read_text())
        return float(gap_from_eigenvalues(data["eigenvalues_eV"], data["fermi_eV"])), ""
    except FileNotFoundError:
        return None, f"{path} is gone"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{path} is unreadable: {exc}"


def _job_output(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "output.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def dft_cost(state: CampaignState) -> dict[str, Any]:
    """Oracle calls, DFT jobs, their hours (from each result's recorded ``wall_s``) and the
    campaign's wall time; ``jobs``: the calls whose provenance names a DFT code."""
    return records_cost(state.records, state.elapsed_s)


def records_cost(records: Sequence[LedgerRecord], elapsed_s: float) -> dict[str, Any]:
    """`dft_cost` of these ledger records and this wall time (seconds)."""
    seconds = [
        float(s)
        for r in records
        if (r.result.provenance or {}).get("code") is not None
        and isinstance(s := (r.result.provenance or {}).get("wall_s"), int | float)
        and math.isfinite(s)
    ]
    jobs = sum((r.result.provenance or {}).get("code") is not None for r in records)
    return {
        "calls": sum(not r.external for r in records),  # oracle calls: measurements told from outside are none
        "jobs": jobs,
        "dft_hours": sum(seconds) / 3600.0,
        "wall_hours": elapsed_s / 3600.0,
    }


def dft_evidence(hits: Sequence[tuple[str, LedgerRecord]], target_name: str) -> pd.DataFrame:
    """One row per ``(target label, hit record)`` measured by a GPAW job: the recorded gap,
    the gap re-read from the folder, whether they agree, the energy and strain energy, the
    job's seconds and GPAW version, and the folder. Empty when no hit ran in a job folder."""
    rows = []
    for label, record in hits:
        res = record.result
        if not res.handle.workdir or (res.provenance or {}).get("code") != "gpaw":  # a GPAW job's folder only
            continue
        folder = Path(res.handle.workdir)
        values = res.values or {}
        recorded = values.get(f"{target_name}_raw", values.get(target_name))
        again, why = reread_gap(folder)
        out = _job_output(folder)
        agree = again is not None and recorded is not None and abs(again - float(recorded)) <= AGREE_EV
        rows.append(
            {
                "target": label,
                "job": folder.name,
                "gap recorded (eV)": recorded,
                "gap re-read (eV)": again,
                "agrees": agree,
                "energy (eV/f.u.)": values.get("energy"),
                "strain energy (eV/f.u.)": values.get("strain_energy"),
                "GPAW s": out.get("wall_s", (res.provenance or {}).get("wall_s")),
                "GPAW": out.get("gpaw_version"),
                "note": why,
                "folder": str(folder),
            }
        )
    return pd.DataFrame(rows)


def campaign_dft(
    state: CampaignState, targets: Sequence[tuple[str, TargetRange]]
) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The evidence table of every diverse hit of ``targets`` (label, range) and the campaign's
    cost with how many hits' gaps were re-read and agree; None when no hit ran in a job folder."""
    U, y = ledger_arrays(state)
    ok, md = feasible_rows(state), state.config.loop.min_distance
    pairs = [(label, state.records[i]) for label, r in targets for i in diverse_hits(U, y, r, md, ok)]
    table = dft_evidence(pairs, state.target_name)
    if table.empty:
        return None
    return table, dft_cost(state) | {"hits": len(table), "hits_agree": int(table["agrees"].sum())}
