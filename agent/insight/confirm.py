"""Confirm switching pairs with an oracle: measure both ends, never stop half-way.

A report is written after the campaign, so a refused design, a failed job or an oracle
that stops answering must not lose the rest of the table: every problem becomes a
``note`` on the pair it concerns and the pair counts as not confirmed.

Designs are submitted one by one, because an oracle validates a batch as a whole (one
design it refuses would refuse the batch); jobs then run side by side and are polled
together. Identical ends are measured once. These measurements are outside any
campaign's ledger: they are what the report shows, not data the campaign learns from.

An end the campaign already measured (``evidence_<end>`` = ``"measured"``, its value in
``measured_<end>``) is evidence enough and is never sent again; a pair whose two ends
were both measured by the campaign is confirmed (or not) at any rank, at no cost.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from agent.core.space import DesignSpace
from agent.insight.switching import end_designs, target_windows
from oracles.base import Handle, Oracle

__all__ = ["Measurement", "confirm_pairs", "known_ends", "measure_designs"]

Measurement = tuple[float | None, str | None]
"""``(value, None)`` when a value came back, else ``(None, why not)``."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def measure_designs(
    oracle: Oracle,
    X: np.ndarray,
    *,
    target_name: str = "gap",
    poll_interval: float = 0.5,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Measurement]:
    """Measure physical designs ``X (n, d)`` and return one `Measurement` per row, in order.

    Never raises for a design, a job or the oracle: a refused submit, a failed job, a
    value without ``target_name``, an error while polling and a timeout (``timeout_s``,
    after which the jobs still running are cancelled, as no one would collect them) all
    come back as reasons.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if not len(X):
        return []
    out: list[Measurement] = [(None, "not measured")] * len(X)
    keys = [tuple(np.round(x, 10)) for x in X]
    first: dict[tuple[float, ...], int] = {}
    handles: dict[int, Handle] = {}
    for i, key in enumerate(keys):
        if key in first:
            continue
        first[key] = i
        try:
            handles[i] = oracle.submit([dict(zip(oracle.space.names, map(float, X[i])))])[0]
        except Exception as exc:  # one refused design must not stop the others
            out[i] = (None, f"not submitted: {_first_line(exc)}")
    pending = dict(handles)
    start = time.monotonic()
    while pending:
        rows = list(pending)
        try:
            statuses = oracle.poll([pending[i] for i in rows])
        except Exception as exc:
            for i in rows:
                out[i] = (None, f"poll failed: {_first_line(exc)}")
            pending.clear()
            break
        done = [i for i, s in zip(rows, statuses) if s.terminal]
        _collect(oracle, [(i, pending.pop(i)) for i in done], target_name, out)
        if not pending:
            break
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            with contextlib.suppress(Exception):  # cancelling is a courtesy; the reason below stands
                oracle.cancel(list(pending.values()))
            for i in pending:
                out[i] = (None, f"timed out after {timeout_s:g} s (job cancelled)")
            break
        sleep(poll_interval)
    return [out[first[k]] for k in keys]


def _collect(oracle: Oracle, done: list[tuple[int, Handle]], target_name: str, out: list[Measurement]) -> None:
    if not done:
        return
    try:
        results = oracle.results([h for _, h in done])
    except Exception as exc:
        for i, _ in done:
            out[i] = (None, f"results failed: {_first_line(exc)}")
        return
    for (i, _), r in zip(done, results):
        value = (r.values or {}).get(target_name) if r.ok else None
        if value is not None and np.isfinite(value):
            out[i] = (float(value), None)
        elif r.ok:
            out[i] = (None, f"result has no finite {target_name!r}")
        else:
            kind = f", {r.error_class.value}" if r.error_class else ""
            out[i] = (None, f"{r.status.value}{kind}: {(r.message or '').strip()[:200]}")


def known_ends(table: pd.DataFrame) -> np.ndarray:
    """Boolean ``(n, 2)``: which ends of each pair the campaign measured (``evidence_<end>`` = ``"measured"``)."""
    out = np.zeros((len(table), 2), dtype=bool)
    for end in (0, 1):
        if f"evidence_{end}" in table.columns and f"measured_{end}" in table.columns:
            value = table[f"measured_{end}"].to_numpy(np.float64)
            out[:, end] = (table[f"evidence_{end}"] == "measured").to_numpy(bool) & np.isfinite(value)
    return out


def confirm_pairs(
    table: pd.DataFrame,
    oracle: Oracle | None,
    space: DesignSpace,
    *,
    targets: tuple[float, float],
    windows: float | tuple[float, float] = 0.1,
    target_name: str = "gap",
    top: int | None = None,
    poll_interval: float = 0.5,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """``table`` (a `pair_table`) plus ``measured_0, measured_1, evidence_0, evidence_1, confirmed, note``.

    The first ``top`` rows (all by default; none without an ``oracle``) are checked at
    both ends: an end the campaign measured keeps its value, any other is measured now.
    ``confirmed`` is True when both values fall inside their windows, False when either
    does not or did not come back (``note`` says why), and NA for rows not checked, except
    that a row with both ends measured by the campaign is always checked. ``evidence_<end>``
    is ``measured`` (the campaign's value), ``confirmed`` or ``refuted`` (measured now,
    inside or outside the window) or ``predicted`` (only the model's word). ``note`` keeps
    what it held before, with this step's findings appended.
    """
    out = table.copy()
    n = 0 if oracle is None else len(out) if top is None else max(0, min(int(top), len(out)))
    w = target_windows(windows)
    known = known_ends(out)
    measured = np.full((len(out), 2), np.nan)
    for end in (0, 1):
        if f"measured_{end}" in out.columns:
            measured[known[:, end], end] = out[f"measured_{end}"].to_numpy(np.float64)[known[:, end]]
    ask = [(r, end) for r in range(n) for end in (0, 1) if not known[r, end]]
    got: dict[tuple[int, int], Measurement] = {}
    if ask and oracle is not None:
        X = np.vstack([end_designs(out.iloc[[r]], space, end) for r, end in ask])
        values = measure_designs(
            oracle, X, target_name=target_name, poll_interval=poll_interval, timeout_s=timeout_s, sleep=sleep
        )
        got = dict(zip(ask, values))
    evidence = np.where(known, "measured", "predicted").astype(object)
    confirmed = pd.array([pd.NA] * len(out), dtype="boolean")
    notes: list[Any] = list(out["note"]) if "note" in out.columns else [""] * len(out)
    for r in range(len(out)):
        if r >= n and not known[r].all():
            continue
        why: list[str] = []
        for end in (0, 1):
            if not known[r, end]:
                now, reason = got[(r, end)]
                if now is None:
                    why.append(f"end {end}: {reason}")
                    continue
                measured[r, end] = now
            value = float(measured[r, end])
            inside = abs(value - targets[end]) <= w[end] + 1e-12
            if not known[r, end]:
                evidence[r, end] = "confirmed" if inside else "refuted"
            if not inside:
                why.append(f"end {end} measured {value:.3g}, outside {targets[end]:g} ± {w[end]:g}")
        confirmed[r] = not why
        notes[r] = "; ".join(filter(None, [str(notes[r] or ""), *why]))
    out["measured_0"], out["measured_1"] = measured[:, 0], measured[:, 1]
    out["evidence_0"], out["evidence_1"] = evidence[:, 0], evidence[:, 1]
    out["confirmed"] = confirmed
    out["note"] = notes
    return out
