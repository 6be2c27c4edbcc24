"""Section 4 and the shared embedding: switching pairs (with oracle confirmation) and UMAP tables.

Verification (rule ``"probability"``, the default) uses the model the campaign trusts for
acquisition (`agent.campaign.plan.with_acquisition_model`, fitted by `agent.report.inputs`:
the symmetry-invariant GP when the config asks for one, else the deep ensemble): a candidate
counts for a target when that model gives its window a probability of at least
`END_PROBABILITY` = √½, so a pair's two ends (taken as independent) hold together with at
least even odds. On a 20-iteration table campaign the ensemble's mean-in-window rule (rule
``"surrogate"``, the former behaviour) listed pairs of which 3 in 20 held; its σ near the
metal boundary is far too small to veto them. The campaign's measurements join both
candidate sets as evidence: an end measured in its window is confirmed without a new oracle
call.

Confirmation goes through the job driver on the report's own journal
(`agent.report.recorded.confirm_journal`), with the campaign's ``[retry]`` rules (outages
waited out, per-job time limits), so what the oracle measured for a report is kept in
``<report>/confirm/`` and reused by the next run, and jobs a killed run left are
re-attached. The oracle is built like the campaign's, except that one keeping jobs on
disk keeps them under the report's ``confirm/oracle/``, apart from the campaign's own jobs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from agent.campaign.journal import FileJournal
from agent.campaign.measure import Tally
from agent.campaign.runner import oracle_for
from agent.campaign.state import ledger_arrays
from agent.core.errors import InnloopError
from agent.insight import SwitchingReport, switching_report
from agent.insight.switching import Predictor
from agent.report.cache import ArrayCache
from agent.report.embed import base_embedding, embed, place, subsample
from agent.report.inputs import ReportInputs, Target
from agent.report.recorded import confirm_journal
from oracles.base import Oracle

__all__ = ["END_PROBABILITY", "ConfirmStats", "Embedding", "PosteriorPredictor", "embedding_tables", "switching_pairs"]

END_PROBABILITY = float(np.sqrt(0.5))
Rule = Literal["probability", "surrogate"]


@dataclass
class ConfirmStats:
    """How the confirmations were obtained: asked for, reused from the ledger, newly submitted."""

    requested: int = 0
    reused: int = 0
    reattached: int = 0
    submitted: int = 0
    ledger: str | None = None
    error: str | None = None


class PosteriorPredictor:
    """Mean and σ of a BoTorch model's posterior, one design at a time (``b x 1 x d``), in chunks.

    One-point posteriors keep the cost linear in the number of designs (a joint posterior
    over thousands of pool rows builds their full covariance).
    """

    def __init__(self, model: Any, chunk: int = 2048) -> None:
        self.model = model
        self.chunk = chunk
        first = next(iter(model.parameters()), None)
        self.dtype = first.dtype if first is not None else torch.float64

    def predict(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        U = np.asarray(U, dtype=np.float64)
        means, stds = [np.zeros(0)], [np.zeros(0)]
        with torch.no_grad():
            for start in range(0, len(U), self.chunk):
                post = self.model.posterior(torch.as_tensor(U[start : start + self.chunk], dtype=self.dtype)[:, None])
                means.append(post.mean[:, 0, 0].double().numpy())
                stds.append(post.variance[:, 0, 0].clamp_min(0).sqrt().double().numpy())
        return np.concatenate(means), np.concatenate(stds)


def _checker(inputs: ReportInputs, rule: Rule) -> tuple[Predictor, float | None, str]:
    """The model that verifies candidates, the probability level (None: mean rule) and its name."""
    models = inputs.models
    assert models is not None
    if rule == "surrogate":
        return models.surrogate, None, "the deep ensemble (mean inside the window)"
    if models.acquisition is not None:
        return PosteriorPredictor(models.acquisition), END_PROBABILITY, "the campaign's acquisition GP"
    return models.surrogate, END_PROBABILITY, "the deep ensemble (the campaign's acquisition model)"


def _measurements(inputs: ReportInputs) -> tuple[np.ndarray, np.ndarray]:
    """Physical designs ``(k, d)`` and values ``(k,)`` of the campaign's oracle calls (NaN: no value)."""
    U, y = ledger_arrays(inputs.state)
    return inputs.material.space.from_unit(U), y


def _confirm_oracle(inputs: ReportInputs, folder: Path) -> tuple[Oracle, FileJournal]:
    journal = confirm_journal(folder)
    return oracle_for(inputs.config, folder / "oracle", override=True), journal


def switching_pairs(
    inputs: ReportInputs,
    targets: tuple[Target, Target],
    sets: tuple[pd.DataFrame, pd.DataFrame],
    *,
    top: int,
    confirm: int,
    folder: Path,
    timeout_s: float | None = None,
    wait_s: float | None = None,
    rule: Rule = "probability",
    measured: bool = True,
) -> tuple[SwitchingReport, ConfirmStats]:
    """The ranked switching table between ``sets`` (plus, with ``measured``, the campaign's in-window
    measurements), verified by ``rule`` (see the module) and confirmed if asked.

    ``timeout_s``: the time limit of one confirmation job (default: the campaign's
    ``retry.job_timeout_s``); a job past it is cancelled and its pair's note says so.
    ``wait_s``: how long the report waits for confirmations in all (``None``: until they
    end); jobs still running then stay in the report's journal for the next report."""
    stats = ConfirmStats(requested=confirm)
    models = inputs.models
    space = inputs.material.space
    if models is None:
        empty = pd.DataFrame(columns=["rank", "distance", "change", "verified", "confirmed", "note"])
        none = {"pairs": 0, "verified": 0, "confirm_attempted": 0, "confirmed": 0, "targets": [math.nan, math.nan]}
        return SwitchingReport(empty, none | {"switching": "skipped: the campaign has trained no models yet"}), stats
    oracle: Oracle | None = None
    journal: FileJournal | None = None
    tally = Tally()
    if confirm > 0:
        try:
            oracle, journal = _confirm_oracle(inputs, folder)
            stats.ledger = str(journal.ledger.path)
        except Exception as exc:  # a report without confirmation beats no report
            stats.error = f"oracle unavailable: {type(exc).__name__}: {str(exc).strip()[:200]}"
    checker, level, checker_name = _checker(inputs, rule)
    windows = (_window(targets[0]), _window(targets[1]))
    report = switching_report(
        sets[0][space.names],
        sets[1][space.names],
        space=space,
        model=checker,
        targets=(targets[0].value, targets[1].value),
        windows=windows,
        top=top,
        material=inputs.material.name,
        min_probability=level,
        measured=_measurements(inputs) if measured else None,
        oracle=oracle,
        confirm_top=confirm,
        target_name=inputs.material.target,
        journal=journal,
        retry=inputs.config.retry,
        poll_interval=min(0.5, inputs.config.retry.poll_interval_s),
        timeout_s=timeout_s,
        wait_s=wait_s,
        tally=tally,
    )
    report.summary["verifier"] = checker_name
    stats.reused, stats.reattached, stats.submitted = tally.reused, tally.reattached, tally.submitted
    return report, stats


@dataclass
class Embedding:
    """The UMAP tables: the design-space map and the switching map (shared coordinates)."""

    data: pd.DataFrame
    switching: pd.DataFrame
    pair_lines: pd.DataFrame
    points: int = 0
    basis: str = ""
    fitted: int = 0  # rows the UMAP was fitted on (the data sample); the rest are placed on it
    cached: bool = False  # the data sample's UMAP came from the report cache
    notes: list[str] = field(default_factory=list)


def _window(t: Target) -> float:
    if t.window is None:
        raise InnloopError(f"switching needs two-sided targets; {t.label} is one-sided")
    return t.window


def embedding_tables(
    inputs: ReportInputs,
    targets: Sequence[Target],
    sets: Sequence[pd.DataFrame],
    pairs: pd.DataFrame,
    *,
    max_points: int,
    seed: int,
    cache: ArrayCache | None = None,
) -> Embedding:
    """The data sample's UMAP (read from ``cache`` when there), with both switching sets and
    every listed pair's ends placed on it (`agent.report.embed`).

    Pair ends are taken from the pair table itself (a measured end need not be a
    candidate row); they are coloured by their measured value where there is one, else
    by the verifying model's mean. Without any data row the candidates are embedded
    themselves. No ``targets`` (a report without switching): the data's map alone.
    Designs enter as the space's unit box (one-hot blocks for categories) and leave in
    real values.
    """
    space, name = inputs.material.space, inputs.material.target
    if inputs.data is not None:
        X_data, y_data, basis = inputs.data.X, inputs.data.y, "bundled data"
    else:
        X_data, y_data = _measured(inputs)
        basis = "campaign measurements"
    take = subsample(len(X_data), max_points, seed)
    blocks: list[tuple[str, np.ndarray, np.ndarray]] = [("data", X_data[take], y_data[take])]
    listed = len(pairs) > 0 and all(f"{n}_{e}" in pairs for n in space.names for e in (0, 1))
    for end, (t, s) in enumerate(zip(targets, sets)):
        keep = subsample(len(s), max(1, max_points // 2), seed + 1 + end)
        X_set = space.from_frame(s, source=f"{t.label} candidates")
        blocks.append((f"{t.label} candidates", X_set[keep], s["pred"].to_numpy(float)[keep]))
    ends: list[int] = []
    if listed:
        for end, t in enumerate(targets):
            X_end = space.from_frame(pairs[[f"{n}_{end}" for n in space.names]].set_axis(space.names, axis=1))
            nan = np.full(len(X_end), np.nan)
            value = pairs[f"measured_{end}"].to_numpy(float) if f"measured_{end}" in pairs else nan
            pred = pairs[f"pred_{end}"].to_numpy(float) if f"pred_{end}" in pairs else nan
            ends.append(sum(len(b[1]) for b in blocks))
            blocks.append((f"{t.label} candidates", X_end, np.where(np.isfinite(value), value, pred)))
    X = np.vstack([b[1] for b in blocks])
    U, n0 = space.to_unit(X) if len(X) else np.zeros((0, space.unit_dim)), len(blocks[0][1])
    cached = False
    if n0:
        xy0, cached = base_embedding(U[:n0], seed=seed, cache=cache)
        xy = np.vstack([xy0, place(U[n0:], U[:n0], xy0, seed=seed)])
    else:
        xy = embed(U, seed=seed)
    labels = np.concatenate([[b[0]] * len(b[1]) for b in blocks])
    values = np.concatenate([b[2] for b in blocks])
    full = space.to_frame(X)
    full.insert(0, "u1", xy[:, 0])
    full.insert(1, "u2", xy[:, 1])
    full.insert(2, "set", labels)
    full.insert(3, name, values)
    data = full[full["set"] == "data"].drop(columns="set").reset_index(drop=True)
    switching = full.reset_index(drop=True)
    lines = _pair_lines(full, pairs, ends)
    return Embedding(data, switching, lines, len(X), basis, fitted=n0 or len(X), cached=cached)


def _pair_lines(full: pd.DataFrame, pairs: pd.DataFrame, ends: list[int]) -> pd.DataFrame:
    """Embedded coordinates of both ends of each listed pair: ``rank, u1_0, u2_0, u1_1, u2_1``.

    ``ends``: the rows of ``full`` where the pairs' end-0 and end-1 designs start.
    """
    cols = ["rank", "u1_0", "u2_0", "u1_1", "u2_1"]
    if not len(pairs) or len(ends) != 2:
        return pd.DataFrame(columns=cols)
    rows = []
    for k, (_, p) in enumerate(pairs.iterrows()):
        a, b = full.iloc[ends[0] + k], full.iloc[ends[1] + k]
        rows.append([int(p["rank"]), a["u1"], a["u2"], b["u1"], b["u2"]])
    return pd.DataFrame(rows, columns=cols)


def _measured(inputs: ReportInputs) -> tuple[np.ndarray, np.ndarray]:
    """The campaign's measured designs ``(k, d)`` with their values (the map's data when the
    material ships none), read from the ledger's handles (real values) by the space."""
    space, name = inputs.material.space, inputs.material.target
    done = [r for r in inputs.state.records if r.result.ok and r.result.values and name in r.result.values]
    X = space.from_rows([r.result.handle.design for r in done], source="the ledger")
    return X, np.array([float((r.result.values or {})[name]) for r in done], dtype=np.float64)
