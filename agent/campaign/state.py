"""What a campaign knows after each iteration, and what follows from it (hits, budget, stop).

`CampaignState` is rebuilt from ``state/<campaign>/`` at any time: the config, the
ledger's results, the prior data and the metrics of the committed iterations. Results
are held in a canonical order -- by iteration, then by design, then by arrival -- not
in arrival order: the jobs of one batch finish in whatever order a scheduler or a lab
runs them, and models, hits and the next batch must not depend on that, or a resumed
campaign would not repeat an uninterrupted one. Nothing here touches the disk or the oracle; the functions below
are pure so the loop, the CLI's ``status`` and the benchmark agree on every count.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from agent.campaign.approval import dropped_designs, stopped_by_person
from agent.campaign.config import CampaignConfig
from agent.campaign.constraints import feasible, limit_values
from agent.campaign.ledger import LedgerRecord
from agent.core.space import DesignSpace
from agent.core.targets import TargetRange
from agent.design.coverage import Families, families_from_json
from oracles.base import design_digest

__all__ = [
    "DEFAULT_FAMILIES",
    "FAILURE_STOP",
    "CampaignState",
    "canonical_order",
    "diverse_hits",
    "failure_report",
    "families_covered",
    "feasible_rows",
    "hit_designs",
    "latest_families",
    "ledger_arrays",
    "missing_hits",
    "observed",
    "still_wanted",
    "stop_reason",
]

DEFAULT_FAMILIES = 10  # families a target's hits are spread over when it names none


@dataclass(frozen=True)
class CampaignState:
    """Everything ``step`` needs that is not a service (oracle, store, sampler)."""

    config: CampaignConfig
    space: DesignSpace
    target_name: str
    iteration: int = 0  # iterations committed so far; the next one to run has this number
    records: tuple[LedgerRecord, ...] = ()
    prior_X: np.ndarray | None = None  # physical (n, d) prior observations from initial.data
    prior_y: np.ndarray | None = None
    history: tuple[dict[str, Any], ...] = ()
    elapsed_s: float = 0.0  # campaign wall time over all runs, up to the last commit
    stopped: str | None = None
    readmitted: tuple[tuple[str, float], ...] = ()  # dropped designs let back in, and when (agent.campaign.approval)

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", canonical_order(self.records))

    def with_records(self, new: list[LedgerRecord]) -> CampaignState:
        return replace(self, records=self.records + tuple(new))

    @property
    def calls(self) -> int:
        """Oracle calls so far: one per result of the oracle in the ledger, failures included
        (measurements given from outside, `LedgerRecord.external`, are no calls)."""
        return sum(not r.external for r in self.records)

    @property
    def external(self) -> int:
        """Measurements given from outside (`agent.campaign.tell`) in the ledger."""
        return sum(r.external for r in self.records)


def canonical_order(records: Iterable[LedgerRecord]) -> tuple[LedgerRecord, ...]:
    """``records`` by (iteration, design digest, ledger sequence): independent of arrival order."""
    return tuple(sorted(records, key=lambda r: (r.iteration, design_digest(r.result.handle.design), r.seq)))


def ledger_arrays(state: CampaignState, *, arrival: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every oracle call, unit-box ``U (n, d)`` and ``y (n,)`` (NaN: no value came back), in
    `canonical_order`, or with ``arrival`` in the order the results came in (benchmarks that
    compare with methods measured in submission order)."""
    space, name = state.space, state.target_name
    records = sorted(state.records, key=lambda r: r.seq) if arrival else state.records
    X = space.from_rows([r.result.handle.design for r in records], source="the ledger")
    y = np.array(
        [(r.result.values or {}).get(name, np.nan) if r.result.ok else np.nan for r in records], dtype=np.float64
    )
    return space.to_unit(X), y


def feasible_rows(state: CampaignState) -> np.ndarray:
    """``(n,)`` bool over `ledger_arrays`' rows (the canonical order): every ``[[constraints]]``
    value present and within its bounds (`agent.campaign.constraints`); all true for an
    unconstrained campaign."""
    limits = state.config.constraints
    return feasible(limit_values(state.records, limits), limits)


def observed(state: CampaignState) -> tuple[np.ndarray, np.ndarray]:
    """Unit-box ``U (n, d)`` and values ``y (n,)`` of every completed measurement plus the prior."""
    U, y = ledger_arrays(state)
    ok = np.isfinite(y)
    U, y = U[ok], y[ok]
    if state.prior_X is not None and state.prior_y is not None:
        U = np.vstack([state.space.to_unit(state.prior_X), U])
        y = np.concatenate([state.prior_y, y])
    return U, y


def measured_unit(state: CampaignState) -> np.ndarray:
    """Unit-box designs ever sent to the oracle, failed ones included, and those a person
    dropped at approval (`agent.campaign.approval`) and did not let back in: never proposed again."""
    U = ledger_arrays(state)[0]
    if dropped := dropped_designs(state.history, dict(state.readmitted)):
        U = np.vstack([U, state.space.to_unit(state.space.from_rows(dropped, source="dropped designs"))])
    return U


def diverse_hits(
    U: np.ndarray, y: np.ndarray, target: TargetRange, min_distance: float, feasible: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the diverse hits among ``U (n, d)``, ``y (n,)`` taken in order.

    A row is a hit when ``y`` lies in the target's range and, with ``feasible (n,)`` given
    (`feasible_rows`), the row is feasible; it counts when it lies at least
    ``min_distance`` (unit box) from every hit counted before it. Taken in `canonical_order`,
    iteration by iteration, the count is a property of the campaign's history that the
    results of later iterations cannot lower.
    """
    inside = target.contains(y)
    idx = np.flatnonzero(inside if feasible is None else inside & np.asarray(feasible, dtype=bool))
    kept: list[int] = []
    for i in idx:
        if all(np.linalg.norm(U[i] - U[j]) >= min_distance for j in kept):
            kept.append(int(i))
    return np.asarray(kept, dtype=int)


def _campaign_hits(state: CampaignState) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Oracle-measured rows only (prior data are not discoveries) and hit indices per target.

    Rows without a value (failures) are never hits: NaN lies in no range; nor are rows
    outside a ``[[constraints]]`` limit or without its value.
    """
    U, y = ledger_arrays(state)
    md, ok = state.config.loop.min_distance, feasible_rows(state)
    return U, y, [diverse_hits(U, y, t.range, md, ok) for t in state.config.targets]


def hit_designs(state: CampaignState) -> list[np.ndarray]:
    """Per target, the unit-box designs of its diverse hits ``(h_t, d)``."""
    U, _, idx = _campaign_hits(state)
    return [U[i] for i in idx]


def hit_table(state: CampaignState) -> list[list[dict[str, Any]]]:
    """Per target, its diverse hits as physical designs with the measured value (and each
    ``[[constraints]]`` value, which a hit always has)."""
    U, y, idx = _campaign_hits(state)
    limits = state.config.constraints
    extra = limit_values(state.records, limits)
    out = []
    for ids in idx:
        X = state.space.from_unit(U[ids]) if len(ids) else np.zeros((0, state.space.dim))
        rows = state.space.to_rows(X)
        out.append(
            [
                row | {state.target_name: float(y[i])} | {c.property: float(extra[i, j]) for j, c in enumerate(limits)}
                for row, i in zip(rows, ids)
            ]
        )
    return out


def missing_hits(state: CampaignState) -> list[int]:
    """Hits each target still lacks."""
    _, _, idx = _campaign_hits(state)
    return [max(0, t.hits - len(i)) for t, i in zip(state.config.targets, idx)]


def latest_families(state: CampaignState) -> list[Families | None]:
    """Per target, the families its models last believed in (`agent.campaign.plan.believed_families`,
    kept in each iteration's metrics); ``None`` before any model, or with ``families = 1``."""
    for metrics in reversed(state.history):
        stored = metrics.get("families")
        if stored:
            return list(families_from_json(stored))
    return [None] * len(state.config.targets)


def families_covered(state: CampaignState, families: Sequence[Families | None] | None = None) -> list[int | None]:
    """Per target, how many of its families hold one of its diverse hits (``None``: no families
    yet; a target with ``families = 1`` has one, covered by any hit). ``families``: those to
    count in (`agent.campaign.plan.choose` passes the ones it just drew); `latest_families` by default."""
    return _covered(state, families or latest_families(state), hit_designs(state))


def _covered(state: CampaignState, fams: Sequence[Families | None], hits: list[np.ndarray]) -> list[int | None]:
    """`families_covered` for per target ``fams`` and diverse ``hits`` already in hand."""
    out: list[int | None] = []
    for t, f, h in zip(state.config.targets, fams, hits):
        if t.families == 1:  # one family: the whole solution set, covered by any hit
            out.append(min(1, len(h)))
        else:
            out.append(None if f is None else len(f.covered(h)))
    return out


def still_wanted(state: CampaignState, families: Sequence[Families | None] | None = None) -> list[int]:
    """Per target, what it still lacks: hits, or families without a hit when it asks for
    ``families`` (whichever is more); the batch's slots are shared out by these. A target
    whose models found fewer families than it asks for (too few designs believed in range
    to split further) waits only for those (`stop_reason` says so)."""
    fams = families or latest_families(state)
    hits = hit_designs(state)  # once: the diverse-hit rule walks the whole ledger
    out = []
    for t, h, covered, f in zip(state.config.targets, hits, _covered(state, fams, hits), fams):
        missing = max(0, t.hits - len(h))
        lacking = 0
        if t.families is not None and t.families > 1:
            lacking = t.families - (covered or 0) if f is None else min(t.families, f.k) - (covered or 0)
        out.append(max(missing, lacking))
    return out


def _fewer_families(state: CampaignState) -> str:
    """Where targets' models found fewer families than asked: a note for the stop reason."""
    notes = [
        f"{t.short}: its models found {f.k} of the {t.families} families asked"
        for t, f in zip(state.config.targets, latest_families(state))
        if f is not None and t.families is not None and f.k < t.families
    ]
    return f" ({'; '.join(notes)})" if notes else ""


FAILURE_STOP = "stopped: oracle failure rate"  # the prefix of the one reason that is not a success


def failure_report(state: CampaignState) -> str | None:
    """Why the oracle's recent failures should stop the campaign, or ``None``.

    Looks at the last ``retry.failure_window`` results (every attempt counts), and only once
    that many exist, so a few unlucky early jobs never end a campaign. The message says how
    many failed, of which kinds, and the commonest message, so the user knows where to look.
    """
    r = state.config.retry
    if r.max_failure_rate is None or state.calls < r.failure_window:
        return None
    # recent in time, not in canonical order; the oracle's results only (not those told from outside)
    arrived = sorted((rec for rec in state.records if not rec.external), key=lambda rec: rec.seq)
    recent = [rec.result for rec in arrived[-r.failure_window :]]
    failed = [res for res in recent if not res.ok]
    rate = len(failed) / len(recent)
    if rate <= r.max_failure_rate:
        return None
    kinds: dict[str, int] = {}
    messages: dict[str, int] = {}
    for res in failed:
        kind = f"{res.status.value} ({res.error_class.value if res.error_class else 'unclassified'})"
        kinds[kind] = kinds.get(kind, 0) + 1
        text = (res.message or "").strip()
        msg = text.splitlines()[0][:160] if text else "(no message)"
        messages[msg] = messages.get(msg, 0) + 1
    common = max(messages.items(), key=lambda kv: kv[1])
    return (
        f"{FAILURE_STOP} {rate:.0%} over the last {len(recent)} results is above the limit "
        f"{r.max_failure_rate:.0%} (retry.max_failure_rate): "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        + f"; commonest message ({common[1]}x): {common[0]}; every result is in the ledger"
    )


def stop_reason(state: CampaignState, *, run_started: float | None = None, now: float | None = None) -> str | None:
    """Why the campaign is over, or ``None`` while it should go on."""
    b = state.config.budget
    if (person := stopped_by_person(state.history)) is not None:
        return person
    if not any(still_wanted(state)):
        asked = any(t.families is not None for t in state.config.targets)
        return "every target has its diverse hits" + (" and families" + _fewer_families(state) if asked else "")
    if (failing := failure_report(state)) is not None:
        return failing
    if b.oracle_calls is not None and state.calls >= b.oracle_calls:
        return f"oracle-call budget reached ({state.calls} of {b.oracle_calls})"
    if b.iterations is not None and state.iteration >= b.iterations:
        return f"iteration budget reached ({state.iteration} of {b.iterations})"
    if b.wall_time_s is not None and run_started is not None:
        spent = state.elapsed_s + ((now or time.time()) - run_started)
        if spent >= b.wall_time_s:
            return f"wall-time budget reached ({spent:.0f} s of {b.wall_time_s:g} s)"
    return None


def nearest_distance(U: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Distance from each row of ``U`` to the nearest row of ``ref`` (inf when ``ref`` is empty)."""
    if len(ref) == 0:
        return np.full(len(U), np.inf)
    d, _ = cKDTree(ref).query(U)
    return np.asarray(d)
