"""Per target, how its diverse hits spread over the families its models believe reach it.

Why: "diverse" (0.1 apart in the unit box) can be met many times over in one basin, so
hit counts alone do not say whether a campaign found one way to a target or several.
Each iteration the campaign splits the designs its models believe reach each target into
families (k-means in the unit box, `agent.campaign.plan.believed_families`) and keeps the
split in its metrics. No true solution set is known to a campaign, so the report reads the
models' latest split back (`agent.campaign.state.latest_families`), says that it is the
models', and counts the diverse hits in each family (a hit belongs to the nearest centre).
Where a target has no families (no models yet, ``families = 1``, nothing predicted in
range) the report says which, rather than show an empty table without a word.

Families keep the campaign's numbers (the index into the stored families, from 0, as
``innloop run`` and ``innloop status`` print a hit's family), so a family named in the
console is the same one here; the table lists them by believed size, largest first, and
the figure that marks hits by family uses the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agent.campaign.state import DEFAULT_FAMILIES, CampaignState, hit_designs, latest_families
from agent.core.space import DesignSpace
from agent.design.coverage import Families
from agent.report.inputs import Target, design_frame

__all__ = [
    "FAMILY_COLUMNS",
    "TargetFamilies",
    "families_summary",
    "families_table",
    "families_text",
    "hit_families",
    "report_families",
]

FAMILY_COLUMNS = ["target", "family", "believed", "hits"]  # then the centre's design columns


@dataclass(frozen=True)
class TargetFamilies:
    """One target's families (as the campaign stored them) and its diverse hits ``hits (h, d)``
    in the unit box; ``why``: the reason there are no families (empty when there are)."""

    families: Families | None
    hits: np.ndarray
    why: str = ""

    @property
    def load(self) -> np.ndarray:
        """Diverse hits per family ``(k,)``; empty without families."""
        return self.families.load(self.hits) if self.families is not None else np.zeros(0, dtype=int)


def report_families(state: CampaignState, models_iteration: int | None) -> tuple[list[TargetFamilies], int | None]:
    """Per campaign target its families and hits, and the iteration whose models drew them.

    The families are the last ones stored in the campaign's metrics (`latest_families`);
    ``models_iteration``: the report's last models (None: the campaign has none yet).
    """
    at = next((m.get("iteration") for m in reversed(state.history) if m.get("families")), None)
    stored = latest_families(state)
    out = []
    for spec, fam, hits in zip(state.config.targets, stored, hit_designs(state)):
        if fam is not None:
            out.append(TargetFamilies(fam, hits))
            continue
        if spec.families == 1:
            why = "it asks for families = 1, so its hits are not split into families"
        elif models_iteration is None:
            why = "the campaign has no trained models yet, so they believe nothing about where its hits lie"
        elif at is None:
            why = "no iteration recorded families (no batch was chosen by trained models yet)"
        else:
            why = f"the models of iteration {at} predicted no design in its range"
        out.append(TargetFamilies(None, hits, why))
    return out, (int(at) if at is not None else None)


def hit_families(found: Sequence[TargetFamilies]) -> list[np.ndarray]:
    """Per target, the family (the campaign's index, from 0) of each of its diverse hits; -1 without families."""
    return [f.families.assign(f.hits) if f.families is not None else np.full(len(f.hits), -1) for f in found]


def _rounded(space: DesignSpace, frame: pd.DataFrame) -> pd.DataFrame:
    """Continuous columns rounded to a thousandth of their range (log scales: 3 significant digits)."""
    for p in space.parameters:
        if p.kind != "continuous":
            continue
        col = frame[p.name].to_numpy(dtype=np.float64)
        if p.log:
            digits = 2 - np.floor(np.log10(np.abs(np.where(col == 0, 1.0, col)))).astype(int)
            frame[p.name] = [round(float(v), int(d)) for v, d in zip(col, digits)]
        else:
            frame[p.name] = np.round(col, max(0, math.ceil(3 - math.log10(p.upper - p.lower))))
    return frame


def families_table(targets: Sequence[Target], found: Sequence[TargetFamilies], space: DesignSpace) -> pd.DataFrame:
    """One row per family of each target: ``target, family, believed, hits`` and its centre.

    ``family``: the campaign's index of the family (from 0); rows by ``believed``, largest
    first. ``believed``: designs of the models' solution set in the family; ``hits``: the target's
    diverse hits whose nearest centre it is; the centre in physical units (category names,
    whole integers, continuous values rounded to a thousandth of their range).
    """
    parts = []
    for t, f in zip(targets, found):
        if f.families is None:
            continue
        fam = f.families
        frame = pd.DataFrame(
            {"target": t.key, "family": np.arange(fam.k), "believed": fam.sizes.astype(int), "hits": f.load}
        )
        centre = _rounded(space, design_frame(space, space.from_unit(fam.centres)))
        order = np.argsort(-fam.sizes, kind="stable")
        parts.append(pd.concat([frame, centre], axis=1).iloc[order])
    if not parts:
        return pd.DataFrame(columns=[*FAMILY_COLUMNS, *space.names])
    return pd.concat(parts, ignore_index=True)


def families_summary(targets: Sequence[Target], found: Sequence[TargetFamilies]) -> list[dict[str, Any]]:
    """Per target, for ``summary.json``: its diverse hits, the families they fall in and how many there are."""
    out: list[dict[str, Any]] = []
    for t, f in zip(targets, found):
        row: dict[str, Any] = {"target": t.label, "hits": len(f.hits)}
        if f.families is None:
            row |= {"families": None, "covered": None, "why": f.why}
        else:
            row |= {"families": f.families.k, "covered": int((f.load > 0).sum()), "hits_per_family": f.load.tolist()}
        out.append(row)
    return out


def families_text(summary: Sequence[dict[str, Any]], at: int | None, pool: bool) -> list[str]:
    """The paragraph on families: how they were found, then one sentence per target."""
    believed = (
        "the oracle's pool rows its surrogate predicts in the target's range"
        if pool
        else "uniform random designs moved onto the surrogate's level set, those predicted in the target's range"
    )
    where = f"the models of iteration {at}" if at is not None else "the campaign's models"
    text = [
        f"Families: the designs {where} believe reach each target ({believed}) split by k-means into the "
        f"target's families ({DEFAULT_FAMILIES} unless it asks for a number); "
        "a hit belongs to the family with the nearest centre. "
        "The table lists each family (numbered as innloop run and status name a hit's family), the designs "
        "believed in it, the diverse hits in it and its centre in physical units, the largest family first."
    ]
    for s in summary:
        n, label = s["hits"], s["target"]
        hits = f"{n} diverse hit{'s' if n != 1 else ''}"
        if s["families"] is None:
            text.append(f"No families for {label} ({hits}): {s['why']}.")
        else:
            text.append(
                f"{hits} in {s['covered']} of {s['families']} families the campaign's models believe reach "
                f"{label} (k-means of designs predicted in range; no true solution set is known to the campaign, "
                "so these are the models' regions)."
            )
    return text
