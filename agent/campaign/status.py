"""``innloop status``: where a campaign stands, from its folder alone (never the oracle).

Everything is read back and verified from ``state/<campaign>/`` (the config, the ledger, the
jobs in flight, the committed iterations' metrics), so it answers while a run holds the
campaign, after a crash, or on another machine with a copy of the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.campaign.approval import read_decision, read_request, stopped_by_person
from agent.campaign.config import CampaignConfig, config_from_dict
from agent.campaign.journal import read_state_json
from agent.campaign.state import (
    CampaignState,
    families_covered,
    feasible_rows,
    hit_designs,
    hit_table,
    latest_families,
    ledger_arrays,
    missing_hits,
    stop_reason,
)
from agent.campaign.store import CampaignStore
from agent.campaign.tell import waiting
from agent.core.errors import StateError

__all__ = ["FAMILY", "campaign_status"]


def campaign_status(state_dir: str | Path, name: str) -> dict[str, Any]:
    """Iterations, oracle calls, results, jobs in flight and hits per target, from disk only.

    Per target also the families of its believed solution set (`agent.campaign.state.latest_families`)
    that hold one of its hits: ``families`` (``None`` before any model, or with ``families = 1``),
    ``families_total`` (how many the models last found) and ``families_wanted`` (the config's
    ``families``, ``None`` unset); ``infeasible_in_window``: its in-window measurements that a
    ``[[constraints]]`` limit barred from being hits. ``constraints`` lists the limits (with a
    ``label``) and ``infeasible`` counts the completed measurements outside them. Each hit
    design row carries its constrained values and says its ``family`` (index into those
    families, ``None`` without them; left out where a design column is called ``family``).
    """
    store = CampaignStore(state_dir, name)
    if not store.exists():
        raise StateError(f"no campaign {name!r} under {Path(state_dir)} (no {store.root / 'config.json'})")
    raw, _ = store.load_config()
    config = config_from_dict(raw, source=str(store.root / "config.json"))
    material = config.design_material()
    records = tuple(store.ledger.records())
    last = store.last_completed()
    history = _status_history(store, config, last)
    state = CampaignState(config, material.space, material.target, last + 1, records, history=tuple(history))
    inflight = store.read_inflight()
    hits = hit_table(state)
    fams = latest_families(state)
    covered = families_covered(state)
    if FAMILY not in (*material.space.names, material.target):
        for rows, f, U in zip(hits, fams, hit_designs(state)):
            where = f.assign(U) if f is not None and len(U) else [None] * len(rows)
            for row, i in zip(rows, where):
                row[FAMILY] = None if i is None else int(i)
    statuses: dict[str, int] = {}
    for r in records:
        if r.external:
            continue
        statuses[r.result.status.value] = statuses.get(r.result.status.value, 0) + 1
    infeasible = _infeasible(state)
    return {
        "campaign": name,
        "state": str(store.root),
        "iterations": last + 1,
        "oracle": config.oracle.name,
        "oracle_calls": state.calls,
        "external": state.external,  # measurements told from outside (`agent.campaign.tell`), no calls
        "external_waiting": waiting(store),  # told while a run held the lock: recorded at its next iteration
        "results": statuses,
        "in_flight": len(inflight.get("jobs", [])) if inflight else 0,
        "targets": [
            {
                "label": t.range.label(),
                "short": t.short,
                "value": t.value,
                "window": t.window,
                "low": t.low,
                "high": t.high,
                "wanted": t.hits,
                "hits": len(h),
                "missing": m,
                "families": c,
                "families_wanted": t.families,
                "families_total": None if f is None else f.k,
                "infeasible_in_window": n_out,
                "designs": h,
            }
            for t, h, m, c, f, n_out in zip(config.targets, hits, missing_hits(state), covered, fams, infeasible[1])
        ],
        "constraints": [c.to_dict() | {"label": c.label()} for c in config.constraints],
        "infeasible": infeasible[0],
        "elapsed_s": history[-1].get("elapsed_s") if history else 0.0,
        "transfer": (history[-1].get("fit") or {}).get("transfer") if history else None,  # [transfer]'s map
        "done": (stop_reason(state) is not None or _stopped(store, last) is not None)
        and not (inflight and inflight.get("jobs")),
        "approval": _waiting_approval(store, last + 1),
    }


FAMILY = "family"  # the key of a hit design row naming its family in `campaign_status`


def _stopped(store: CampaignStore, last: int) -> str | None:
    """A person's (or a timeout's) stop at approval in any committed iteration: the status's
    history holds the last iterations only, and an asynchronous campaign collects its jobs in
    one more iteration after the stop."""
    approvals = []
    for i in range(last + 1):
        metrics = store.root / "iterations" / f"{i:04d}" / "metrics.json"
        data = read_state_json(metrics, "an iteration's metrics")
        if isinstance(data, dict) and data.get("approval"):
            approvals.append({"iteration": i, "approval": data["approval"]})
    return stopped_by_person(approvals)


def _waiting_approval(store: CampaignStore, iteration: int) -> dict[str, Any] | None:
    """The batch waiting for a person's approval (`agent.campaign.approval`), if one is."""
    folder = store.root / "iterations" / f"{iteration:04d}"
    asked = read_request(folder)
    if asked is None or read_decision(folder) is not None:
        return None
    return {"iteration": asked.iteration, "designs": len(asked.rows), "asked_at": asked.asked_at, "link": asked.link}


def _infeasible(state: CampaignState) -> tuple[int, list[int]]:
    """Completed measurements outside a ``[[constraints]]`` limit (or without its value), and
    per target those of them inside its window: what would have been hits but for the limits."""
    _, y = ledger_arrays(state)
    out = (~feasible_rows(state)) & np.isfinite(y)
    return int(out.sum()), [int((out & t.range.contains(y)).sum()) for t in state.config.targets]


def _status_history(store: CampaignStore, config: CampaignConfig, last: int) -> list[dict[str, Any]]:
    """The verified metrics `campaign_status` needs: the last iteration's, and back to the newest
    one holding families (`agent.campaign.state.latest_families`) where a target spreads its hits
    over families; an iteration without models (the first) holds none."""
    if last < 0:
        return []
    history = [store.verify_iteration(last)]
    if any(t.families != 1 for t in config.targets):
        i = last
        while not history[0].get("families") and i > 0:
            i -= 1
            history.insert(0, store.verify_iteration(i))
    return history
