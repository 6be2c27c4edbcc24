"""The metal–insulator switching table of a report: pairs, surrogate check, oracle check.

`switching_report` ties `agent.insight.switching` (pairing, sentences, verification)
and `agent.insight.confirm` (oracle measurements) into the one table a report shows.
The campaign's own measurements enter as candidates and as evidence
(`agent.insight.switching.with_measurements`): an end measured in its window needs no
model and no new oracle call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from agent.campaign.config import RetrySpec
from agent.campaign.journal import Journal
from agent.campaign.measure import Tally
from agent.core.space import DesignSpace
from agent.insight.confirm import confirm_pairs, known_ends
from agent.insight.switching import (
    Predictor,
    design_matrix,
    find_pairs,
    pair_table,
    target_windows,
    verify_pairs,
    window_mask,
    with_measurements,
)
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
    min_probability: float | None = None,
    measured: tuple[np.ndarray, np.ndarray] | None = None,
    require_verified: bool = True,
    oracle: Oracle | None = None,
    confirm_top: int | None = None,
    target_name: str = "gap",
    journal: Journal | None = None,
    retry: RetrySpec | None = None,
    poll_interval: float | None = None,
    timeout_s: float | None = None,
    wait_s: float | None = None,
    tally: Tally | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SwitchingReport:
    """The ``top`` smallest switches from designs at ``targets[0]`` (``set0``) to ``targets[1]`` (``set1``).

    Sets are physical designs (frames with the space's columns, or ``(n, d)`` arrays).
    ``measured``: the campaign's measured designs ``(k, d)`` and values ``(k,)``; each set
    then gains the measured designs inside its window and loses the candidates measured
    outside it (`agent.insight.switching.with_measurements`). With ``require_verified``
    only designs measured in their window or that the model puts there are paired (by
    its mean, or with ``min_probability`` by the window's probability, and under
    ``max_sigma``), so every listed pair is verified; otherwise all are paired and
    ``verified`` tells. With an ``oracle``, the first ``confirm_top`` pairs (default: all
    listed) are checked at both ends; only ends the campaign did not measure are sent,
    through the job driver (`agent.insight.confirm.measure_designs`: ``journal``,
    ``retry``, ``poll_interval``, ``timeout_s``, ``wait_s``, ``tally``, ``sleep``). Candidates for a
    table oracle must be its own rows (see `agent.insight.switching.in_window_candidates`).

    Table columns: ``rank`` (1 = smallest change), ``distance`` (weighted unit box, see
    `agent.insight.switching`), ``change`` (sentence), ``index_0``/``index_1`` (row
    positions in the sets, measured designs appended), the design columns with suffixes
    ``_0`` and ``_1``, ``pred_*, pred_std_*, prob_*`` (model mean, σ, window probability),
    ``verified``, ``measured_0, measured_1`` (NaN when not measured), ``evidence_0,
    evidence_1`` (``measured``, ``confirmed``, ``refuted``, ``predicted``), ``confirmed``
    (nullable boolean: NA when not checked) and ``note``. Summary keys: ``targets``,
    ``windows``, ``candidates``, ``measured_candidates`` and ``in_window`` (per set),
    ``pairs``, ``verified``, ``confirm_attempted`` (the first rows, checked with the
    oracle), ``confirmed`` (among them), ``confirmed_by_campaign`` (rows at any rank whose
    two ends the campaign measured inside their windows),
    ``ends_measured`` (ends the campaign had measured), ``ends_sent`` (ends sent to the
    oracle), ``rule``, ``min_probability``, ``metric``.
    """
    w = target_windows(windows)
    X0, X1 = design_matrix(set0, space), design_matrix(set1, space)
    v0, v1 = np.full(len(X0), np.nan), np.full(len(X1), np.nan)
    if measured is not None:
        X0, v0 = with_measurements(X0, measured[0], measured[1], space, target=targets[0], window=w[0])
        X1, v1 = with_measurements(X1, measured[0], measured[1], space, target=targets[1], window=w[1])
    in0 = _in_window_mask(model, space, X0, v0, targets[0], w[0], max_sigma, min_probability)
    in1 = _in_window_mask(model, space, X1, v1, targets[1], w[1], max_sigma, min_probability)
    keep0 = np.flatnonzero(in0) if require_verified else np.arange(len(X0))
    keep1 = np.flatnonzero(in1) if require_verified else np.arange(len(X1))
    pairs = [
        (int(keep0[a]), int(keep1[b]), d)
        for a, b, d in find_pairs(X0[keep0], X1[keep1], space, top=top, weights=weights)
    ]
    table = pair_table(X0, X1, pairs, space, material=material, weights=weights)
    for end, values in ((0, v0), (1, v1)):
        got = values[table[f"index_{end}"].to_numpy(int)] if len(table) else np.zeros(0)
        table[f"measured_{end}"] = got
        table[f"evidence_{end}"] = np.where(np.isfinite(got), "measured", "predicted").astype(object)
    table = verify_pairs(
        table, model, space, targets=targets, windows=w, max_sigma=max_sigma, min_probability=min_probability
    )
    table["note"] = ""
    attempted = 0 if oracle is None else len(table) if confirm_top is None else max(0, min(confirm_top, len(table)))
    sent = int((~known_ends(table)[:attempted]).sum())
    table = confirm_pairs(
        table,
        oracle,
        space,
        targets=targets,
        windows=w,
        target_name=target_name,
        top=attempted,
        journal=journal,
        retry=retry,
        poll_interval=poll_interval,
        timeout_s=timeout_s,
        wait_s=wait_s,
        tally=tally,
        sleep=sleep,
    )
    both_measured = (table["evidence_0"] == "measured") & (table["evidence_1"] == "measured")
    front = [c for c in table.columns if c not in ("evidence_0", "evidence_1", "confirmed", "note")]
    table = table[[*front, "evidence_0", "evidence_1", "confirmed", "note"]]
    rule = (
        "model mean inside the window"
        if min_probability is None
        else f"model probability of the window >= {min_probability:.2f}"
    )
    summary = {
        "targets": [float(targets[0]), float(targets[1])],
        "windows": list(w),
        "candidates": [len(X0), len(X1)],
        "measured_candidates": [int(np.isfinite(v0).sum()), int(np.isfinite(v1).sum())],
        "in_window": [int(in0.sum()), int(in1.sum())],
        "pairs": len(table),
        "verified": int(table["verified"].sum()),
        "confirm_attempted": attempted,
        "confirmed": int(table["confirmed"].iloc[:attempted].fillna(False).sum()),
        "confirmed_by_campaign": int((table["confirmed"].fillna(False) & both_measured).sum()),
        "ends_measured": int(sum((table[f"evidence_{e}"] == "measured").sum() for e in (0, 1))),
        "ends_sent": sent,
        "rule": rule + (f", σ <= {max_sigma:g}" if max_sigma is not None else ""),
        "min_probability": min_probability,
        "metric": "Euclidean distance in the design space's unit box"
        + (f", weights {dict(weights)}" if weights else ""),
    }
    return SwitchingReport(table.reset_index(drop=True), summary)


def _in_window_mask(
    model: Predictor,
    space: DesignSpace,
    X: np.ndarray,
    values: np.ndarray,
    target: float,
    window: float,
    max_sigma: float | None,
    min_probability: float | None,
) -> np.ndarray:
    """In the window by measurement where ``values`` is finite, else by the model."""
    known = np.isfinite(values)
    ok = known & (np.abs(values - target) <= window + 1e-12)
    ask = np.flatnonzero(~known)
    if len(ask):
        mean, std = (np.asarray(v, dtype=np.float64) for v in model.predict(space.to_unit(X[ask])))
        ok[ask] = window_mask(mean, std, target, window, max_sigma, min_probability)
    return ok
