"""Confirm switching pairs with an oracle: measure both ends, never stop half-way.

A report is written after the campaign, so a refused design, a failed job or an oracle
that stops answering must not lose the rest of the table: every problem becomes a
``note`` on the pair it concerns and the pair counts as not confirmed.

The measuring is the job driver's (`agent.campaign.measure.measure_rows`): outages are
waited out up to ``retry.outage_s``, a job past ``retry.job_timeout_s`` is cancelled and
recorded as timed out, infrastructure failures are retried. Designs are submitted one by
one, because an oracle validates a batch as a whole (one design it refuses would refuse
the batch); jobs then run side by side and are polled together. Identical ends are
measured once. With a ``journal`` (a report's ``confirm/`` folder) a design already in its
ledger is answered from it and jobs a killed run left are re-attached; without one the
journal is a temporary folder and jobs still running when the oracle is given up on are
cancelled, as no one would collect them. These measurements are outside any campaign's
ledger: they are what the report shows, not data the campaign learns from.

An end the campaign already measured (``evidence_<end>`` = ``"measured"``, its value in
``measured_<end>``) is evidence enough and is never sent again; a pair whose two ends
were both measured by the campaign is confirmed (or not) at any rank, at no cost.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from agent.campaign.config import RetrySpec
from agent.campaign.journal import FileJournal, Job, Journal, in_flight
from agent.campaign.measure import Tally, final, latest_results, measure_rows
from agent.core.errors import ConfigError, one_line
from agent.core.space import DesignSpace
from agent.insight.switching import end_designs, target_windows
from oracles.base import Oracle, Result, design_digest

__all__ = ["CONFIRM_TAG", "Measurement", "confirm_pairs", "known_ends", "measure_designs"]

CONFIRM_TAG = "confirm:"  # ledger tag of a confirmation: this prefix and the design's digest

Measurement = tuple[float | None, str | None]
"""``(value, None)`` when a value came back, else ``(None, why not)``."""


def _rules(retry: RetrySpec | None, poll_interval: float | None, timeout_s: float | None) -> RetrySpec:
    """``retry`` (default `RetrySpec`'s) with the poll interval and the per-job time limit given here."""
    return (retry or RetrySpec()).updated(poll_interval_s=poll_interval, job_timeout_s=timeout_s)


@contextlib.contextmanager
def _journal(journal: Journal | None) -> Iterator[tuple[Journal, bool]]:
    """``(journal, kept)``: the one given, or one in a temporary folder (not kept)."""
    if journal is not None:
        yield journal, True
        return
    with tempfile.TemporaryDirectory(prefix="innloop-confirm-") as folder:
        yield FileJournal(folder), False


def measure_designs(
    oracle: Oracle,
    X: np.ndarray,
    *,
    target_name: str = "gap",
    journal: Journal | None = None,
    retry: RetrySpec | None = None,
    poll_interval: float | None = None,
    timeout_s: float | None = None,
    wait_s: float | None = None,
    tally: Tally | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda _m: None,
) -> list[Measurement]:
    """Measure physical designs ``X (n, d)`` and return one `Measurement` per row, in order.

    ``retry``: the driver's rules (default `RetrySpec`'s); ``poll_interval`` and
    ``timeout_s`` (the per-job time limit) override its ``poll_interval_s`` and
    ``job_timeout_s``. ``wait_s``: the longest this call waits in all; designs still at
    the oracle then are reported as such, their jobs kept in ``journal`` for the next call
    (cancelled without one). ``journal`` and ``tally`` (counts added to it): see the module.
    Never raises for a design, a job or the oracle: a refused submit, a failed or timed
    out job, a value without ``target_name`` and an oracle given up on (`OracleUnavailable`
    after ``outage_s``, a refusal) all come back as reasons; what was measured before the
    oracle was given up on is kept.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if not len(X):
        return []
    rows = [dict(zip(oracle.space.names, map(float, x))) for x in X]
    refused: dict[str, Exception] = {}
    failure: Exception | None = None

    def refuse(job: Job, exc: Exception) -> None:
        refused[job.tag.removeprefix(CONFIRM_TAG)] = exc

    if wait_s is not None and not (np.isfinite(wait_s) and wait_s > 0):
        raise ConfigError(f"the confirmation wait must be a positive number of seconds, got {wait_s}")
    rules = _rules(retry, poll_interval, timeout_s)
    left: list[Job] = []
    with _journal(journal) as (book, kept):
        try:
            left = measure_rows(
                oracle,
                rows,
                book,
                rules,
                tag=CONFIRM_TAG,
                again="the next confirmation of these designs",
                refuse=refuse,
                tally=tally,
                deadline=None if wait_s is None else time.time() + wait_s,
                log=log,
                sleep=sleep,
            )
            if left and not kept:
                _cancel(oracle, book)
        except Exception as exc:  # the oracle was given up on; every design still gets its reason
            failure = exc
            if not kept:
                _cancel(oracle, book)
        results = latest_results(book, CONFIRM_TAG, oracle.name)
    waiting = {j.tag.removeprefix(CONFIRM_TAG) for j in left}
    late = f"still at the oracle after {wait_s} s ({'kept for the next report' if kept else 'cancelled'})"
    keys = [design_digest(row) for row in rows]
    out = [_measurement(k, results.get(k), refused, failure, target_name) for k in keys]
    return [(None, late) if v is None and k in waiting else (v, why) for k, (v, why) in zip(keys, out)]


def _cancel(oracle: Oracle, journal: Journal) -> None:
    """Cancel the jobs left in a journal no one will read again (a courtesy: the reasons stand)."""
    with contextlib.suppress(Exception):
        handles = [j.handle for j in in_flight(journal)[0] if j.handle is not None]
        if handles:
            oracle.cancel(handles)


def _measurement(
    key: str, result: Result | None, refused: dict[str, Exception], failure: Exception | None, target_name: str
) -> Measurement:
    if key in refused:
        return None, f"not submitted: {one_line(refused[key])}"
    if result is None or (failure is not None and not final(result)):
        return None, "not measured" if failure is None else f"not measured: {one_line(failure)}"
    value = (result.values or {}).get(target_name) if result.ok else None
    if value is not None and np.isfinite(value):
        return float(value), None
    if result.ok:
        return None, f"result has no finite {target_name!r}"
    kind = f", {result.error_class.value}" if result.error_class else ""
    return None, f"{result.status.value}{kind}: {(result.message or '').strip()[:200]}"


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
    journal: Journal | None = None,
    retry: RetrySpec | None = None,
    poll_interval: float | None = None,
    timeout_s: float | None = None,
    wait_s: float | None = None,
    tally: Tally | None = None,
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
    what it held before, with this step's findings appended. The other arguments go to
    `measure_designs`.
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
            oracle,
            X,
            target_name=target_name,
            journal=journal,
            retry=retry,
            poll_interval=poll_interval,
            timeout_s=timeout_s,
            wait_s=wait_s,
            tally=tally,
            sleep=sleep,
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
