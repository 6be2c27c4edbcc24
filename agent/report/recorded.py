"""An oracle wrapper that keeps every confirmation measurement of a report in its own ledger.

Confirming switching pairs costs oracle calls, and a report is re-run whenever someone
wants it fresh: a measurement must never be lost or paid twice. `RecordedOracle` sits
between `agent.insight.confirm` and the campaign's oracle:

- a design already in the report's ledger (``<report>/confirm/ledger.jsonl``, an
  `agent.campaign.ledger.Ledger`) is answered from it without asking the oracle;
- a design submitted by a run that died before its result came back is re-attached
  through the handle saved in ``inflight.json`` (written atomically right after submit);
- every new result goes to the ledger (fsynced) before anyone sees it.

Results that failed for infrastructure reasons are not reused (a retry may succeed);
physics failures and values are. These measurements never enter the campaign's ledger.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.campaign.ledger import Ledger
from agent.core.atomic import write_json
from agent.core.errors import StateError
from oracles.base import ErrorClass, Handle, JobStatus, Oracle, Result, design_digest, designs_to_rows

__all__ = ["RecordedOracle"]

_TAG = "confirm:"
_FROM_LEDGER = "report-ledger"


def _reusable(result: Result) -> bool:
    return result.ok or result.error_class != ErrorClass.INFRASTRUCTURE


class RecordedOracle:
    """`Oracle` protocol over ``inner``, answering from and recording into ``folder/ledger.jsonl``."""

    def __init__(self, inner: Oracle, folder: str | Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.space = inner.space
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.folder / "ledger.jsonl")
        self._known: dict[str, Result] = {}
        for rec in self.ledger.records():  # later records of a design replace earlier ones
            if rec.tag.startswith(_TAG) and _reusable(rec.result):
                self._known[rec.tag.removeprefix(_TAG)] = rec.result
        self._inflight_path = self.folder / "inflight.json"
        self._inflight: dict[str, dict[str, Any]] = self._read_inflight()
        self.reused = 0  # designs answered from the ledger
        self.reattached = 0  # designs whose job a previous run had submitted
        self.submitted = 0  # designs sent to the oracle by this run

    def _read_inflight(self) -> dict[str, dict[str, Any]]:
        if not self._inflight_path.exists():
            return {}
        try:
            data = json.loads(self._inflight_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StateError(f"{self._inflight_path}: cannot read the confirmation jobs in flight: {exc}") from None
        if not isinstance(data, dict):
            raise StateError(f"{self._inflight_path}: expected a JSON object")
        return {str(k): v for k, v in data.items() if isinstance(v, dict)}

    def _save_inflight(self) -> None:
        write_json(self._inflight_path, self._inflight, indent=1)

    def submit(self, designs: Any) -> list[Handle]:
        out: list[Handle] = []
        for row in designs_to_rows(self.space, designs):
            key = design_digest(row)
            if key in self._known:
                out.append(Handle(oracle=_FROM_LEDGER, job_id=key, design=row))
                self.reused += 1
            elif key in self._inflight:
                out.append(Handle.from_json(self._inflight[key]["handle"]))
                self.reattached += 1
            else:
                handle = self.inner.submit([row])[0]
                self._inflight[key] = {"handle": handle.to_json()}
                self._save_inflight()  # before anything else: a crash now re-attaches instead of paying again
                out.append(handle)
                self.submitted += 1
        return out

    def _key(self, handle: Handle) -> str:
        for key, entry in self._inflight.items():
            if entry["handle"].get("job_id") == handle.job_id:
                return key
        return design_digest(handle.design)

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        live = [h for h in handles if h.oracle != _FROM_LEDGER]
        statuses = iter(self.inner.poll(live) if live else [])
        return [self._known[h.job_id].status if h.oracle == _FROM_LEDGER else next(statuses) for h in handles]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        live = [h for h in handles if h.oracle != _FROM_LEDGER]
        fresh = iter(self.inner.results(live) if live else [])
        out: list[Result] = []
        for h in handles:
            if h.oracle == _FROM_LEDGER:
                out.append(self._known[h.job_id])
                continue
            result = next(fresh)
            key = self._key(h)
            if result.handle.job_id not in self.ledger.job_ids():
                self.ledger.append(result, iteration=0, tag=_TAG + key)  # durable before it is used
            if _reusable(result):
                self._known[key] = result
            if self._inflight.pop(key, None) is not None:
                self._save_inflight()
            out.append(result)
        return out

    def cancel(self, handles: Sequence[Handle]) -> None:
        live = [h for h in handles if h.oracle != _FROM_LEDGER]
        if live:
            self.inner.cancel(live)
        keys = [self._key(h) for h in live]
        removed = [k for k in keys if self._inflight.pop(k, None) is not None]
        if removed:
            self._save_inflight()
