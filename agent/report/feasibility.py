"""What a campaign's ``[[constraints]]`` changed: hits with their limited values, and the
design rules with and without the limits.

A limit on a second property (a strain energy, a cost) rules out designs that reach the
target, so the designs that count look different: a strain-energy cap leaves the mildly
strained cells and drops the heavily sheared ones. A reader should see that shift, not
only the hits that survived it. `rules_with_limits` computes one summary twice over the
campaign's own measurements inside each target's window: over all of them, and over the
feasible ones only. The summary is the report's design rules (`agent.report.tables.RULE_FEATURES`,
strain statistics) for a strained crystal, or the design parameters themselves for any
other space. Measurements, not candidates: whether a candidate is feasible is only a
model's guess, while a measured design carries its measured value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from agent.campaign.constraints import LimitSpec, limit_values
from agent.campaign.state import CampaignState, diverse_hits, feasible_rows, ledger_arrays
from agent.core.materials import Material
from agent.insight import quantile_table, strain_features
from agent.report.inputs import Target, design_frame
from agent.report.tables import RULE_FEATURES

__all__ = ["ALL", "FEASIBLE", "hit_frames", "limits_text", "rules_with_limits"]

ALL, FEASIBLE = "all in window", "feasible"  # the two sets of `rules_with_limits`
QUANTILE_COLUMNS = ["group", "feature", "n", "q05", "q25", "q50", "q75", "q95"]


def hit_frames(state: CampaignState, material: Material, targets: Sequence[Target]) -> list[pd.DataFrame]:
    """Per target, the campaign's measured diverse hits: the design columns in real values,
    the measured value and each constrained value (a hit has every one of them)."""
    U, y = ledger_arrays(state)
    limits = state.config.constraints
    extra = limit_values(state.records, limits)
    ok = feasible_rows(state)
    space, name = material.space, material.target
    out = []
    for t in targets:
        idx = diverse_hits(U, y, t.range, state.config.loop.min_distance, ok)
        frame = design_frame(space, space.from_unit(U[idx]))
        frame[name] = y[idx]
        for j, limit in enumerate(limits):
            frame[limit.property] = extra[idx, j]
        out.append(frame)
    return out


def rules_with_limits(
    state: CampaignState, material: Material, targets: Sequence[Target], strain: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The design rules over each target's in-window measurements, all of them and the feasible ones.

    First table, one row per measurement in a window: ``target, set`` (`ALL` or `FEASIBLE`;
    a feasible row appears under both), each feature and each constrained value. Second: its
    `quantile_table` per ``"<target label> · <set>"``. ``strain``: the features are
    `RULE_FEATURES` (%); otherwise the space's numeric design parameters.
    """
    U, y = ledger_arrays(state)
    limits = state.config.constraints
    extra = limit_values(state.records, limits)
    ok = feasible_rows(state)
    space = material.space
    designs = design_frame(space, space.from_unit(U)) if len(U) else pd.DataFrame(columns=space.names)
    if strain:
        features = strain_features(designs, material)[list(RULE_FEATURES)] if len(U) else None
        names = list(RULE_FEATURES)
    else:
        names = [p.name for p in space.parameters if p.kind != "categorical"]
        features = designs[names]
    parts = []
    for t in targets:
        inside = t.contains(y)
        for label, rows in ((ALL, inside), (FEASIBLE, inside & ok)):
            idx = np.flatnonzero(rows)
            if not len(idx) or features is None:
                continue
            part = features.iloc[idx].reset_index(drop=True)
            for j, limit in enumerate(limits):
                part[limit.property] = extra[idx, j]
            part.insert(0, "set", label)
            part.insert(0, "target", t.key)
            parts.append(part)
    cols = ["target", "set", *names, *(c.property for c in limits)]
    points = pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)
    if not len(points):
        return points, pd.DataFrame(columns=QUANTILE_COLUMNS)
    labels = {t.key: t.label for t in targets}
    groups = (points["target"].map(labels) + " · " + points["set"]).to_numpy()
    return points, quantile_table(points, groups, columns=names)


def limits_text(limits: Sequence[LimitSpec], quantiles: pd.DataFrame, strain: bool) -> list[str]:
    """The words of the design rules' feasibility part: what counts, and how many fell out."""
    if not limits:
        return []
    said = ", ".join(c.label() for c in limits)
    what = "average normal and shear strain" if strain else "design parameters"
    counts = quantiles.drop_duplicates("group")[["group", "n"]] if len(quantiles) else quantiles
    kept = "; ".join(f"{g}: {int(n)}" for g, n in counts.itertuples(index=False)) if len(counts) else "none yet"
    return [
        f"With the campaign's limits ({said}): a measurement counts as a hit only when it is inside a target's "
        "window and every limited value was measured and lies within its bounds. The same summary of the "
        f"{what} is given over all the campaign's measurements inside each window and over the feasible ones "
        f"only, so the difference is what the limits change in the design rules. Measurements per set: {kept}."
    ]
