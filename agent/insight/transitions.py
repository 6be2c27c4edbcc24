"""The metal–insulator switching table of a report: pairs, surrogate check, oracle check.

`switching_report` ties `agent.insight.switching` (pairing, sentences, verification)
and `agent.insight.confirm` (oracle measurements) into the one table a report shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from agent.insight.confirm import confirm_pairs
from agent.insight.switching import (
    Predictor,
    design_matrix,
    find_pairs,
    pair_table,
    target_windows,
    verify_pairs,
    window_mask,
)
from agent.space import DesignSpace
from oracles.base import Oracle

__all__ = ["SwitchingReport", "switching_report"]


@dataclass(frozen=True)
class SwitchingReport:
    """The ranked pairs (columns in `switching_report`) and the counts its summary line needs."""

    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def switching_report(
    set0: pd.DataFrame | np.ndarray,
    set1: pd.DataFrame | np.ndarray,
    *,
    space: DesignSpace,
    model: Predictor,
    targets: tuple[float, float],
    windows: float | tuple[float, float] = 0.1,
    top: int = 20,
    material: str | None = None,
    weights: Mapping[str, float] | None = None,
    max_sigma: float | None = None,
    require_verified: bool = True,
    oracle: Oracle | None = None,
    confirm_top: int | None = None,
    target_name: str = "gap",
    poll_interval: float = 0.5,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] | None = None,
) -> SwitchingReport:
    """The ``top`` smallest switches from designs at ``targets[0]`` (``set0``) to ``targets[1]`` (``set1``).

    Sets are physical designs (frames with the space's columns, or ``(n, d)`` arrays).
    With ``require_verified`` only designs the surrogate puts inside their own window
    (and under ``max_sigma``) are paired, so every listed pair is verified; otherwise all
    are paired and ``verified`` tells. With an ``oracle``, the first ``confirm_top`` pairs
    (default: all listed) are measured at both ends. Candidates for a table oracle must
    be its own rows (see `agent.insight.switching.in_window_candidates`).

    Table columns: ``rank`` (1 = smallest change), ``distance`` (weighted unit box, see
    `agent.insight.switching`), ``change`` (sentence), ``index_0``/``index_1`` (row
    positions in ``set0``/``set1``), the design columns with suffixes ``_0`` and ``_1``,
    ``pred_0, pred_std_0, pred_1, pred_std_1`` (surrogate), ``verified``,
    ``measured_0, measured_1`` (NaN when not measured), ``confirmed`` (nullable boolean:
    NA when not sent to an oracle) and ``note``. Summary keys: ``targets``, ``windows``,
    ``candidates`` and ``in_window`` (per set), ``pairs``, ``verified``, ``confirm_attempted``,
    ``confirmed``, ``metric``.
    """
    w = target_windows(windows)
    X0, X1 = design_matrix(set0, space), design_matrix(set1, space)
    in0, in1 = (
        _in_window_mask(model, space, X0, targets[0], w[0], max_sigma),
        _in_window_mask(model, space, X1, targets[1], w[1], max_sigma),
    )
    keep0 = np.flatnonzero(in0) if require_verified else np.arange(len(X0))
    keep1 = np.flatnonzero(in1) if require_verified else np.arange(len(X1))
    pairs = [
        (int(keep0[a]), int(keep1[b]), d)
        for a, b, d in find_pairs(X0[keep0], X1[keep1], space, top=top, weights=weights)
    ]
    table = pair_table(X0, X1, pairs, space, material=material, weights=weights)
    table = verify_pairs(table, model, space, targets=targets, windows=w, max_sigma=max_sigma)
    table["note"] = ""
    attempted = 0
    if oracle is not None:
        attempted = len(table) if confirm_top is None else max(0, min(confirm_top, len(table)))
        extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        table = confirm_pairs(
            table,
            oracle,
            space,
            targets=targets,
            windows=w,
            target_name=target_name,
            top=attempted,
            poll_interval=poll_interval,
            timeout_s=timeout_s,
            **extra,
        )
    else:
        table["measured_0"] = np.nan
        table["measured_1"] = np.nan
        table["confirmed"] = pd.array([pd.NA] * len(table), dtype="boolean")
    table = table[[*[c for c in table.columns if c != "note"], "note"]]
    summary = {
        "targets": [float(targets[0]), float(targets[1])],
        "windows": list(w),
        "candidates": [len(X0), len(X1)],
        "in_window": [int(in0.sum()), int(in1.sum())],
        "pairs": len(table),
        "verified": int(table["verified"].sum()),
        "confirm_attempted": attempted,
        "confirmed": int(table["confirmed"].fillna(False).sum()),
        "metric": "Euclidean distance in the design space's unit box"
        + (f", weights {dict(weights)}" if weights else ""),
    }
    return SwitchingReport(table.reset_index(drop=True), summary)


def _in_window_mask(
    model: Predictor, space: DesignSpace, X: np.ndarray, target: float, window: float, max_sigma: float | None
) -> np.ndarray:
    if not len(X):
        return np.zeros(0, dtype=bool)
    mean, std = (np.asarray(v, dtype=np.float64) for v in model.predict(space.to_unit(X)))
    return window_mask(mean, std, target, window, max_sigma)
