"""A person approves each batch before the oracle sees it (``[approval] required = true``).

A lab that spends reagents and instrument hours does not let a loop send batches nobody
has seen. So once a batch is chosen (and saved in ``batch.csv``), and before anything of
it is submitted, the campaign asks:

1. the question (`Proposal`: each design in physical units, the forecast ± σ, why it was
   chosen) goes to ``approval_request.json`` in the iteration's folder, with when it was
   first asked; a run killed while it waits asks the same question again, about the same
   batch, and the timeout still counts from the first time;
2. a `Gate` waits for the answer: `FileGate` for ``innloop approve`` from any shell, the
   Prefect flow's gate (`flows.approval`) for the form in the Prefect UI;
3. the answer (`Decision`: approve, with designs dropped or none, or stop; a free-text
   reason; who and when) is written to ``approval.json`` *before* anything is submitted,
   becomes part of the iteration's metrics (so the report and ``status`` show it), and a
   dropped design joins the measured ones that are never proposed again.

Unanswered after ``timeout_s``, the campaign does what ``on_timeout`` says, and records
that no one answered. A stop ends the campaign (`stop_reason`) with the person's reason.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from agent.campaign.journal import read_state_json
from agent.campaign.ledger import seal, unseal
from agent.core.atomic import create_bytes, write_json
from agent.core.errors import StateError
from oracles.base import design_digest

__all__ = [
    "DECISION",
    "REQUEST",
    "STOPPED",
    "Decision",
    "FileGate",
    "Gate",
    "Proposal",
    "ask",
    "decide",
    "dropped_designs",
    "read_decision",
    "read_readmitted",
    "read_request",
    "readmit",
    "stopped_by_person",
]

READMITTED = "readmitted.json"  # in the campaign's folder: dropped designs a person let back in
REQUEST = "approval_request.json"
DECISION = "approval.json"
STOPPED = "stopped at approval"  # the stop reason's prefix after a person's (or a timeout's) stop

Action = Literal["approve", "stop"]


@dataclass(frozen=True)
class Proposal:
    """What a person is asked to approve: the batch as rows ``#1..#k`` (`rows`' dicts hold
    the design's columns plus ``target``, ``pred``, ``std`` and ``reason``)."""

    campaign: str
    iteration: int
    asked_at: float
    value: str  # the measured value's name (its forecast is ``pred`` ± ``std``)
    columns: list[str]  # the design's columns, in order
    units: dict[str, str]
    rows: list[dict[str, Any]]
    link: str | None = None  # where else it can be answered (the Prefect run), when there is such a place

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proposal:
        return cls(**data)

    def markdown(self) -> str:
        """The batch as a markdown table, one row per design, numbered as `Decision.drop` counts."""
        head = ["#", *(f"{c} ({self.units[c]})" if self.units.get(c) else c for c in self.columns)]
        head += ["target", f"predicted {self.value}", "why chosen"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, r in enumerate(self.rows, start=1):
            cells = [str(i), *(_cell(r[c]) for c in self.columns), _cell(r["target"])]
            guess = f"{r['pred']:.3g} ± {r['std']:.2g}" if np.isfinite(r["pred"]) else "none (a random design)"
            cells += [guess, str(r["reason"]).replace("|", "/")]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


@dataclass(frozen=True)
class Decision:
    """A person's answer: ``approve`` (without the rows in ``drop``, numbered from 1) or ``stop``."""

    action: Action
    drop: tuple[int, ...] = ()
    reason: str = ""
    by: str = "a person"  # who or what answered: "innloop approve", "the Prefect UI", "timeout"
    decided_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"drop": list(self.drop)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        if data.get("action") not in ("approve", "stop"):
            raise ValueError(f"action must be 'approve' or 'stop', got {data.get('action')!r}")
        drop = data.get("drop") or []
        if not isinstance(drop, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in drop):
            raise ValueError("drop must be a list of row numbers")
        return cls(
            data["action"],
            tuple(drop),
            str(data.get("reason") or ""),
            str(data.get("by") or ""),
            float(data["decided_at"]),
        )


class Gate(Protocol):
    """Waits for a person's answer to ``proposal`` until ``deadline`` (`time.time()`); ``None``: no answer.

    ``earlier``: the same question as a run that was stopped while it waited asked it (its
    ``link`` names where it was asked then), ``None`` the first time."""

    def ask(self, proposal: Proposal, deadline: float, earlier: Proposal | None = None) -> Decision | None: ...


@dataclass
class FileGate:
    """Waits for ``approval.json`` in ``folder`` (what ``innloop approve`` writes), polling."""

    folder: Path
    poll_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def ask(self, proposal: Proposal, deadline: float, earlier: Proposal | None = None) -> Decision | None:
        while (found := read_decision(self.folder)) is None:
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sleep(min(self.poll_s, left))
        return found


def decide(proposal: Proposal, action: Action, drop: Sequence[int] = (), reason: str = "", by: str = "") -> Decision:
    """A checked `Decision` on ``proposal``: every dropped row exists (numbered from 1), at most once."""
    n = len(proposal.rows)
    bad = sorted({i for i in drop if not 1 <= i <= n})
    if bad:
        raise StateError(f"no design #{', #'.join(map(str, bad))} in the batch of {n} waiting for approval")
    if action == "stop" and drop:
        raise StateError("a stop sends nothing: drop designs only when approving the rest")
    return Decision(action, tuple(sorted(set(drop))), reason.strip(), by or "a person")


def summary(decision: Decision, proposal: Proposal) -> dict[str, Any]:
    """The decision as the iteration's metrics keep it: with the dropped designs themselves."""
    dropped = [{c: proposal.rows[i - 1][c] for c in proposal.columns} for i in decision.drop]
    return decision.to_json() | {"asked_at": proposal.asked_at, "designs": len(proposal.rows), "dropped": dropped}


def ask(
    folder: Path,
    make: Callable[[float], Proposal],
    gate: Gate,
    told: Callable[[Proposal], None],
    timeout_s: float,
    on_timeout: Action,
) -> tuple[Decision, Proposal]:
    """The decision on the batch in ``folder``: the one on disk, else a person's through ``gate``
    (``make(asked_at)`` builds the question, asked again with its first ``asked_at`` after a
    kill; ``told`` hears it before the wait), else ``on_timeout``'s after ``timeout_s``.
    Written to ``approval.json`` before it is returned: before anything is submitted."""
    if (done := read_decision(folder)) is not None:
        return done, read_request(folder) or make(done.decided_at)
    first = read_request(folder)
    proposal = make(first.asked_at if first is not None else time.time())
    if proposal != first:  # the first time, or a new run (its own link) asking again
        write_request(folder, proposal)
    told(proposal)
    got = gate.ask(proposal, proposal.asked_at + timeout_s, first)
    if got is None:
        got = Decision(on_timeout, (), f"no answer within {timeout_s:g} s", "timeout")
    return write_decision(folder, got), proposal  # `innloop approve` may have been first: its answer holds


# -- files -------------------------------------------------------------------------------------
def write_request(folder: Path, proposal: Proposal) -> Path:
    return write_json(folder / REQUEST, seal(proposal.to_json()), indent=1)


def read_request(folder: Path) -> Proposal | None:
    """The question asked about the batch in ``folder``, if one was."""
    found: Proposal | None = _read(folder / REQUEST, "approval request", Proposal.from_json)
    return found


def write_decision(folder: Path, decision: Decision) -> Decision:
    """Record ``decision`` unless one is recorded already (``innloop approve`` and a run's timeout
    may answer at the same moment): returns the decision that holds, the first one written."""
    if create_bytes(folder / DECISION, json.dumps(seal(decision.to_json()), indent=1).encode()):
        return decision
    first = read_decision(folder)
    assert first is not None  # the name was taken by a complete file (written atomically)
    return first


def read_decision(folder: Path) -> Decision | None:
    """The answer on the batch in ``folder``, if one was given."""
    found: Decision | None = _read(folder / DECISION, "approval decision", Decision.from_json)
    return found


def _read(path: Path, what: str, parse: Callable[[dict[str, Any]], Any]) -> Any:
    """A sealed approval file parsed, ``None`` when there is none; a damaged one is one `StateError`."""
    if not path.exists():
        return None
    try:
        return parse(unseal(read_state_json(path, f"the {what}"), str(path)))
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{path}: damaged {what} ({exc}); delete it to be asked again") from None


# -- what follows from the decisions -----------------------------------------------------------
def dropped_designs(
    history: Sequence[dict[str, Any]], readmitted: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """Every design a person dropped, over the committed iterations' metrics, less those a person
    let back in after dropping them (``readmitted``: design digest -> when, `read_readmitted`);
    a design dropped again after that is dropped again."""
    since = readmitted or {}
    out = []
    for m in history:
        a = m.get("approval") or {}
        for d in a.get("dropped", []):
            if since.get(design_digest(d), -math.inf) < float(a.get("decided_at", 0.0)):
                out.append(d)
    return out


def read_readmitted(root: Path) -> dict[str, float]:
    """Dropped designs a person let back in (``innloop approve --readmit``): digest -> when."""
    path = root / READMITTED
    if not path.exists():
        return {}
    data = read_state_json(path, "the readmitted designs")
    if not isinstance(data, dict) or not all(isinstance(v, int | float) for v in data.values()):
        raise StateError(f"{path}: expected an object of design digests and times")
    return {str(k): float(v) for k, v in data.items()}


def readmit(root: Path, designs: Sequence[dict[str, Any]], now: float | None = None) -> dict[str, float]:
    """Let ``designs`` (dropped earlier) be proposed again from ``now`` on; returns every readmission."""
    every = read_readmitted(root) | {design_digest(d): time.time() if now is None else now for d in designs}
    write_json(root / READMITTED, every, indent=1)
    return every


def stopped_by_person(history: Sequence[dict[str, Any]]) -> str | None:
    """The stop reason of a campaign whose batch a person (or a timeout) stopped, else ``None``."""
    for m in history:
        a = m.get("approval") or {}
        if a.get("action") == "stop":
            why = f": {a['reason']}" if a.get("reason") else ""
            return f"{STOPPED} of iteration {m['iteration']} by {a.get('by') or 'a person'}{why}"
    return None


def _cell(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return str(v)


def as_text(proposal: Proposal) -> str:
    """The question as ``innloop approve --show`` prints it."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(proposal.asked_at))
    return (
        f"{proposal.campaign}, iteration {proposal.iteration}: {len(proposal.rows)} designs waiting since {when}\n"
        + (proposal.markdown())
    )
