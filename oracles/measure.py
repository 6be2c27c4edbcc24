"""Measure a table of designs with any oracle: submit, wait, collect, resumably.

The handles are written beside the output (``OUT.handles.json``) as soon as ``submit``
returns. Running the same command again finds them and re-attaches instead of submitting
a second time, so an interrupted measurement (Ctrl-C, a killed shell, a reboot) costs
nothing already paid for.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from agent.core.atomic import write_text
from oracles.base import Handle, Oracle, OracleError, absolute_path, designs_to_rows

__all__ = ["handles_path", "measure"]


def handles_path(out: Path) -> Path:
    return out.with_name(out.name + ".handles.json")


def measure(
    oracle: Oracle,
    designs: pd.DataFrame,
    out: str | Path,
    *,
    poll_interval: float = 1.0,
    timeout_s: float | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> pd.DataFrame:
    """Measure ``designs`` (the oracle space's columns) and write one row per design to ``out``
    (a relative ``out`` is taken against the current folder, once)."""
    out = absolute_path(out)
    rows = designs_to_rows(oracle.space, designs)
    key = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    saved = handles_path(out)
    if saved.exists():
        handles = _load_handles(saved, oracle.name, key)
        log(f"re-attached to {len(handles)} jobs from {saved}")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        handles = oracle.submit(rows)
        write_text(
            saved, json.dumps({"oracle": oracle.name, "designs": key, "handles": [h.to_json() for h in handles]})
        )
        log(f"submitted {len(handles)} jobs to {oracle.name}; handles in {saved}")
    start = time.monotonic()
    while True:
        statuses = oracle.poll(handles)
        waiting = sum(not s.terminal for s in statuses)
        if not waiting:
            break
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise OracleError(
                f"{waiting} of {len(handles)} jobs still running after {timeout_s:g} s; "
                f"run the same command again to re-attach (handles in {saved})"
            )
        time.sleep(poll_interval)
    table = _table(oracle, handles)
    write_text(out, table.to_csv(index=False, float_format="%.6g"))
    done = int((table["status"] == "completed").sum())
    log(f"wrote {len(table)} rows to {out}: {done} completed, {len(table) - done} not")
    return table


def _table(oracle: Oracle, handles: list[Handle]) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for r in oracle.results(handles):
        rec: dict[str, Any] = dict(r.handle.design)
        rec.update(r.values or {})
        rec.update(
            status=r.status.value,
            error_class=None if r.error_class is None else r.error_class.value,
            message=r.message,
            oracle=r.handle.oracle,
            job_id=r.handle.job_id,
            log=r.log,
        )
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _load_handles(path: Path, oracle: str, key: str) -> list[Handle]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise OracleError(f"{path} is unreadable ({exc}); it holds the handles of submitted jobs: repair it") from None
    if not isinstance(saved, dict) or saved.get("oracle") != oracle or saved.get("designs") != key:
        raise OracleError(
            f"{path} belongs to another measurement (oracle {saved.get('oracle') if isinstance(saved, dict) else '?'!r}"
            f" or other designs); choose another --out or remove it if those jobs no longer matter"
        )
    return [Handle.from_json(h) for h in saved.get("handles", [])]
