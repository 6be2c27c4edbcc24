"""Section 4 and the shared embedding: switching pairs (with oracle confirmation) and UMAP tables.

Confirmation goes through `agent.report.recorded.RecordedOracle`, so what the oracle
measured for a report is kept in ``<report>/confirm/`` and reused by the next run.
The oracle is built like the campaign's, except that one keeping jobs on disk keeps
them under the report's ``confirm/oracle/``, apart from the campaign's own jobs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agent.insight import SwitchingReport, switching_report
from agent.report.embed import embed, subsample
from agent.report.inputs import ReportInputs, Target
from agent.report.recorded import RecordedOracle
from oracles import make_oracle, oracle_class

__all__ = ["ConfirmStats", "Embedding", "embedding_tables", "switching_pairs"]


@dataclass
class ConfirmStats:
    """How the confirmations were obtained: asked for, reused from the ledger, newly submitted."""

    requested: int = 0
    reused: int = 0
    reattached: int = 0
    submitted: int = 0
    ledger: str | None = None
    error: str | None = None


def _confirm_oracle(inputs: ReportInputs, folder: Path) -> RecordedOracle:
    settings = dict(inputs.config.oracle.settings)
    params = inspect.signature(oracle_class(inputs.config.oracle.name)).parameters
    if "workdir" in params:
        settings["workdir"] = str(folder / "oracle")
    return RecordedOracle(make_oracle(inputs.config.oracle.name, **settings), folder)


def switching_pairs(
    inputs: ReportInputs,
    targets: tuple[Target, Target],
    sets: tuple[pd.DataFrame, pd.DataFrame],
    *,
    top: int,
    confirm: int,
    folder: Path,
    timeout_s: float | None = None,
) -> tuple[SwitchingReport, ConfirmStats]:
    """The ranked switching table between ``sets`` (each verified by the last surrogate), confirmed if asked."""
    stats = ConfirmStats(requested=confirm)
    models = inputs.models
    space = inputs.material.space
    if models is None:
        empty = pd.DataFrame(columns=["rank", "distance", "change", "verified", "confirmed", "note"])
        return SwitchingReport(empty, {"pairs": 0, "verified": 0, "confirm_attempted": 0, "confirmed": 0}), stats
    oracle: RecordedOracle | None = None
    if confirm > 0:
        try:
            oracle = _confirm_oracle(inputs, folder)
            stats.ledger = str(oracle.ledger.path)
        except Exception as exc:  # a report without confirmation beats no report
            stats.error = f"oracle unavailable: {type(exc).__name__}: {str(exc).strip()[:200]}"
    report = switching_report(
        sets[0][space.names],
        sets[1][space.names],
        space=space,
        model=models.surrogate,
        targets=(targets[0].value, targets[1].value),
        windows=(targets[0].window, targets[1].window),
        top=top,
        material=inputs.material.name,
        oracle=oracle,
        confirm_top=confirm,
        target_name=inputs.material.target,
        poll_interval=min(0.5, inputs.config.retry.poll_interval_s),
        timeout_s=timeout_s,
    )
    if oracle is not None:
        stats.reused, stats.reattached, stats.submitted = oracle.reused, oracle.reattached, oracle.submitted
    return report, stats


@dataclass
class Embedding:
    """The UMAP tables: the design-space map and the switching map (shared coordinates)."""

    data: pd.DataFrame
    switching: pd.DataFrame
    pair_lines: pd.DataFrame
    points: int = 0
    basis: str = ""
    notes: list[str] = field(default_factory=list)


def embedding_tables(
    inputs: ReportInputs,
    targets: tuple[Target, Target],
    sets: tuple[pd.DataFrame, pd.DataFrame],
    pairs: pd.DataFrame,
    *,
    max_points: int,
    seed: int,
) -> Embedding:
    """Fit one UMAP on a data sample and both switching sets; keep every listed pair's ends."""
    space, name = inputs.material.space, inputs.material.target
    if inputs.data is not None:
        X_data, y_data, basis = inputs.data.X, inputs.data.y, "bundled data"
    else:
        frame = _measured(inputs)
        X_data, y_data, basis = frame[space.names].to_numpy(float), frame[name].to_numpy(float), "campaign measurements"
    take = subsample(len(X_data), max_points, seed)
    blocks: list[tuple[str, np.ndarray, np.ndarray]] = [("data", X_data[take], y_data[take])]
    picked: list[np.ndarray] = []
    for end, (t, s) in enumerate(zip(targets, sets)):
        keep = subsample(len(s), max(1, max_points // 2), seed + 1 + end)
        if len(pairs) and f"index_{end}" in pairs:
            keep = np.union1d(keep, pairs[f"index_{end}"].to_numpy(int))
        picked.append(keep)
        blocks.append((f"{t.label} candidates", s[space.names].to_numpy(float)[keep], s["pred"].to_numpy(float)[keep]))
    X = np.vstack([b[1] for b in blocks])
    xy = embed(space.to_unit(X), seed=seed) if len(X) else np.zeros((0, 2))
    labels = np.concatenate([[b[0]] * len(b[1]) for b in blocks])
    values = np.concatenate([b[2] for b in blocks])
    full = space.to_frame(X)
    full.insert(0, "u1", xy[:, 0])
    full.insert(1, "u2", xy[:, 1])
    full.insert(2, "set", labels)
    full.insert(3, name, values)
    data = full[full["set"] == "data"].drop(columns="set").reset_index(drop=True)
    switching = full.reset_index(drop=True)
    lines = _pair_lines(full, pairs, picked, len(take))
    return Embedding(data, switching, lines, len(X), basis)


def _pair_lines(full: pd.DataFrame, pairs: pd.DataFrame, picked: list[np.ndarray], n_data: int) -> pd.DataFrame:
    """Embedded coordinates of both ends of each listed pair: ``rank, u1_0, u2_0, u1_1, u2_1``."""
    cols = ["rank", "u1_0", "u2_0", "u1_1", "u2_1"]
    if not len(pairs) or "index_0" not in pairs:
        return pd.DataFrame(columns=cols)
    offset = [n_data, n_data + len(picked[0])]
    rows = []
    for _, p in pairs.iterrows():
        r0 = offset[0] + int(np.searchsorted(picked[0], int(p["index_0"])))
        r1 = offset[1] + int(np.searchsorted(picked[1], int(p["index_1"])))
        rows.append([int(p["rank"]), *full.iloc[r0][["u1", "u2"]], *full.iloc[r1][["u1", "u2"]]])
    return pd.DataFrame(rows, columns=cols)


def _measured(inputs: ReportInputs) -> pd.DataFrame:
    """The campaign's measured designs with values (the map's data when the material ships none)."""
    space, name = inputs.material.space, inputs.material.target
    rows: list[dict[str, Any]] = [
        {**r.result.handle.design, name: r.result.values[name]}
        for r in inputs.state.records
        if r.result.ok and r.result.values and name in r.result.values
    ]
    return pd.DataFrame(rows, columns=[*space.names, name])
