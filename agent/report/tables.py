"""The tables behind every figure of a report: pure functions of arrays and frames.

No files and no drawing here, so each number in a report can be tested on its own and
the CSV a reader downloads is exactly what the figure shows. Long ("tidy") tables with
one row per point or per group keep the columns fixed whatever the number of targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from agent.campaign.ledger import LedgerRecord
from agent.campaign.refill import chosen_in
from agent.campaign.state import diverse_hits
from agent.core.materials import Material
from agent.core.space import DesignSpace
from agent.insight import quantile_table, strain_features
from agent.report.inputs import Target
from oracles.base import design_digest

__all__ = [
    "RULE_FEATURES",
    "batch_error_table",
    "calibration_curve",
    "calibration_points",
    "design_rule_tables",
    "distribution_table",
    "diversity_table",
    "failure_table",
    "hits_table",
    "stage_table",
]

RULE_FEATURES = ("normal_mean", "shear_mean", "normal_abs_mean", "shear_abs_mean")
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def distribution_table(data_y: np.ndarray | None, campaign_y: np.ndarray, bins: int = 40) -> pd.DataFrame:
    """Histogram of the target: ``bin_lo, bin_hi, data_count, campaign_count`` on shared bins."""
    parts = [v for v in (data_y, campaign_y) if v is not None and len(v)]
    values = np.concatenate(parts) if parts else np.zeros(1)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    data_count = np.histogram(data_y, edges)[0] if data_y is not None else np.zeros(bins, int)
    camp = campaign_y[np.isfinite(campaign_y)]
    return pd.DataFrame(
        {
            "bin_lo": edges[:-1],
            "bin_hi": edges[1:],
            "data_count": data_count,
            "campaign_count": np.histogram(camp, edges)[0],
        }
    )


def diversity_table(
    targets: Sequence[Target],
    candidates: Sequence[pd.DataFrame],
    data: pd.DataFrame | None,
    data_y: np.ndarray | None,
    hits: Sequence[pd.DataFrame],
    material: str | Material,
    hit_families: Sequence[np.ndarray] | None = None,
) -> pd.DataFrame:
    """Average in-plane vs out-of-plane strain (%) per design: ``target, set, in_plane, out_of_plane, family``.

    Sets: ``data`` (bundled rows measured inside the window), ``candidates``
    and ``campaign hit`` (the campaign's measured diverse hits). ``family``: a hit's family
    (`agent.report.families.hit_families`, per target of ``hits``; negative or absent: none).
    """
    rows = []
    for i, t in enumerate(targets):
        sets: list[tuple[str, pd.DataFrame]] = []
        if data is not None and data_y is not None:
            sets.append(("data", data[t.contains(data_y)]))
        sets += [("candidates", candidates[i]), ("campaign hit", hits[i])]
        for name, frame in sets:
            if not len(frame):
                continue
            f = strain_features(frame, material)
            part = pd.DataFrame(
                {"target": t.key, "set": name, "in_plane": f["in_plane"], "out_of_plane": f["out_of_plane"]}
            )
            part["family"] = pd.array([pd.NA] * len(part), dtype="Int64")
            if name == "campaign hit" and hit_families is not None and i < len(hit_families):
                fam = np.asarray(hit_families[i], dtype=np.int64)
                part["family"] = pd.array([int(v) if v >= 0 else pd.NA for v in fam], dtype="Int64")
            rows.append(part)
    cols = ["target", "set", "in_plane", "out_of_plane", "family"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def design_rule_tables(
    targets: Sequence[Target], candidates: Sequence[pd.DataFrame], material: str | Material
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per candidate the average normal/shear strain and their absolute values; and their quantiles.

    First table: ``target`` plus `RULE_FEATURES` (%); second: `quantile_table` grouped by
    target (``group, feature, n, q05 … q95``).
    """
    parts = []
    for t, frame in zip(targets, candidates):
        if len(frame):
            f = strain_features(frame, material)[list(RULE_FEATURES)].reset_index(drop=True)
            f.insert(0, "target", t.key)
            parts.append(f)
    points = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["target", *RULE_FEATURES])
    if not len(points):
        return points, pd.DataFrame(columns=["group", "feature", "n", "q05", "q25", "q50", "q75", "q95"])
    labels = {t.key: t.label for t in targets}
    q = quantile_table(points, points["target"].map(labels).to_numpy(), columns=list(RULE_FEATURES))
    return points, q


def hits_table(
    U: np.ndarray,
    y: np.ndarray,
    targets: Sequence[Target],
    min_distance: float,
    random_U: np.ndarray | None,
    random_y: np.ndarray | None,
    *,
    repeats: int = 16,
    seed: int = 0,
    feasible: np.ndarray | None = None,
    random_feasible: np.ndarray | None = None,
) -> pd.DataFrame:
    """Diverse hits against oracle calls, and what random screening would have found.

    ``U, y``: the ledger in order (unit box, NaN for failures). The random expectation
    replays ``random_U, random_y`` (designs drawn uniformly over the box with their
    values) in ``repeats`` random orders, counting diverse hits exactly as the campaign
    does, and averages. ``feasible``, ``random_feasible``: which rows meet the campaign's
    ``[[constraints]]`` (`agent.campaign.state.feasible_rows`; ``None``: every row), as a hit
    must. Columns: ``calls, target, hits, random_expected``.
    """
    n = len(y)
    calls = np.arange(1, n + 1)
    rng = np.random.default_rng(seed)
    frames = []
    for t in targets:
        found = diverse_hits(U, y, t.range, min_distance, feasible)
        curve = np.searchsorted(found, np.arange(n), side="right")
        expected = np.full(n, np.nan)
        if random_U is not None and random_y is not None and len(random_y) and n:
            acc = np.zeros(n)
            for _ in range(repeats):
                take = rng.permutation(len(random_y))[:n]
                ok = None if random_feasible is None else random_feasible[take]
                rh = diverse_hits(random_U[take], random_y[take], t.range, min_distance, ok)
                c = np.searchsorted(rh, np.arange(len(take)), side="right").astype(float)
                acc += np.pad(c, (0, n - len(c)), mode="edge") if len(c) < n else c
            expected = acc / repeats
        frames.append(pd.DataFrame({"calls": calls, "target": t.key, "hits": curve, "random_expected": expected}))
    cols = ["calls", "target", "hits", "random_expected"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def batch_error_table(history: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per iteration: calls so far, the batch's MAE and ±2σ coverage (before it was measured), σ scale."""
    rows = []
    for m in history:
        fit = m.get("fit") or {}
        rows.append(
            {
                "iteration": m.get("iteration"),
                "oracle_calls": m.get("oracle_calls"),
                "batch_mae": m.get("batch_mae"),
                "batch_coverage_2sigma": m.get("batch_coverage_2sigma"),
                "n_train": fit.get("n_train"),
                "sigma_scale": fit.get("sigma_scale"),
            }
        )
    cols = ["iteration", "oracle_calls", "batch_mae", "batch_coverage_2sigma", "n_train", "sigma_scale"]
    return pd.DataFrame(rows, columns=cols).astype({c: float for c in cols[2:]})


def calibration_points(
    batches: Sequence[tuple[int, pd.DataFrame]], records: Sequence[LedgerRecord], space: DesignSpace, target_name: str
) -> pd.DataFrame:
    """Each measured design that had a forecast: ``iteration, pred, pred_std, measured, z``.

    ``batches``: ``(iteration, batch.csv frame)``; a design's result is found in the
    ledger by its digest (of its real values, as the ledger's handles hold them), among
    the results of the designs the same iteration chose (in async mode a result may come
    back in a later iteration; its tag names the one that chose it, `agent.campaign.refill`).
    """
    by_key: dict[tuple[int, str], float] = {}
    for r in records:
        value = (r.result.values or {}).get(target_name) if r.result.ok else None
        if value is not None and np.isfinite(value):
            chose = chosen_in(r.tag)
            by_key[(r.iteration if chose is None else chose, design_digest(r.result.handle.design))] = float(value)
    rows = []
    for it, frame in batches:
        # the designs as the ledger holds them (real values: category names, integers)
        designs = space.to_rows(space.from_frame(frame, source=f"batch.csv of iteration {it}")) if len(frame) else []
        for design, (_, row) in zip(designs, frame.iterrows()):
            mu, sd = float(row["pred"]), float(row["pred_std"])
            if not (np.isfinite(mu) and np.isfinite(sd)):
                continue
            key = (it, design_digest(design))
            if key in by_key:
                y = by_key[key]
                rows.append(
                    {"iteration": it, "pred": mu, "pred_std": sd, "measured": y, "z": (y - mu) / max(sd, 1e-12)}
                )
    return pd.DataFrame(rows, columns=["iteration", "pred", "pred_std", "measured", "z"])


def calibration_curve(points: pd.DataFrame, levels: Sequence[float] = LEVELS) -> pd.DataFrame:
    """Nominal central-interval level against the share of measurements inside ``mean ± z σ``."""
    z = np.abs(points["z"].to_numpy(dtype=float))
    observed = [float(np.mean(z <= norm.ppf(0.5 + p / 2))) if len(z) else np.nan for p in levels]
    return pd.DataFrame({"level": list(levels), "observed": observed, "n": len(z)})


def failure_table(records: Sequence[LedgerRecord]) -> pd.DataFrame:
    """Oracle failures by kind: ``status, error_class, count, example`` (commonest first)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in records:
        if not r.result.ok:
            kind = (r.result.status.value, r.result.error_class.value if r.result.error_class else "unclassified")
            groups.setdefault(kind, []).append(
                (r.result.message or "").strip().splitlines()[0][:160] if r.result.message else ""
            )
    rows = [{"status": k[0], "error_class": k[1], "count": len(v), "example": v[0]} for k, v in groups.items()]
    return pd.DataFrame(rows, columns=["status", "error_class", "count", "example"]).sort_values(
        "count", ascending=False, kind="stable"
    )


def stage_table(history: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Seconds per stage and iteration, long: ``iteration, stage, seconds``."""
    rows = [
        {"iteration": m.get("iteration"), "stage": stage, "seconds": float(s)}
        for m in history
        for stage, s in (m.get("seconds") or {}).items()
    ]
    return pd.DataFrame(rows, columns=["iteration", "stage", "seconds"])


PEOPLE_COLUMNS = ["iteration", "what", "by", "when", "designs", "dropped", "reason"]


def people_table(history: Sequence[dict[str, Any]], records: Sequence[LedgerRecord]) -> pd.DataFrame:
    """What people decided and gave, in time order: each batch's approval (`agent.campaign.approval`:
    approved or stopped, by whom, how many designs asked and dropped, why) and the measurements
    told from outside (`agent.campaign.tell`, one row per file and measurer)."""
    rows = []
    for m in history:
        if a := m.get("approval"):
            rows.append(
                {
                    "iteration": m.get("iteration"),
                    "what": "approved" if a["action"] == "approve" else "stopped",
                    "by": a.get("by"),
                    "when": float(a.get("decided_at", np.nan)),
                    "designs": a.get("designs"),
                    "dropped": len(a.get("dropped") or ()),
                    "reason": a.get("reason") or "",
                }
            )
    told: dict[tuple[int, str, str], list[float]] = {}
    for r in records:
        if r.external:
            p = r.result.provenance
            told.setdefault((r.iteration, str(p.get("by") or ""), str(p.get("file") or "")), []).append(r.time)
    for (it, by, file), times in told.items():
        what = f"{len(times)} external measurements"
        rows.append(
            {
                "iteration": it,
                "what": what,
                "by": by,
                "when": min(times),
                "designs": len(times),
                "dropped": 0,
                "reason": f"told from {file}",
            }
        )
    frame = pd.DataFrame(rows, columns=PEOPLE_COLUMNS).sort_values("when", kind="stable")
    frame["when"] = pd.to_datetime(frame["when"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
    return frame
