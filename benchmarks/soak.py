"""Soak: thousands of designs in flight through the http oracle, every result accounted for.

One run: the reference lab server (`oracles.lab_server`, the mock inside with a latency
and a failure rate: half physics, half infrastructure failures, the latter retried) as
a separate process on 127.0.0.1; a real campaign (`agent.campaign.runner.run_campaign`, no
Prefect, no Ray) with the http oracle whose ``[initial] random = N`` puts all N designs
in flight at once, for one iteration. Then the books are checked against the lab's own:

- *lost*: jobs the lab accepted that have no ledger record (must be 0);
- *duplicates*: a job id recorded twice, or a design measured again although its
  previous record was not an infrastructure failure (must be 0);
- every design of the batch has a final record, and the counts by status add up.

Reported: results by status, retries, jobs counted at the lab (``/v1/stats``), wall time,
throughput (ledger records per second), the peak RSS of the campaign process and of the
lab server, and the ledger's size. ``python -m benchmarks.soak --designs 10000``.

Measured on two shared cores (mock latency 2 s, failure rate 0.1, polling every 0.5 s):
10,000 designs gave 10,475 results (9,494 completed, 506 physics failures, 475 retried
infrastructure failures), 0 lost, 0 duplicates, in 60-77 s (136-174 results/s); peak RSS
431 MiB for the campaign, 350 MiB for the lab server; a 10.2 MiB ledger. Submitting is
most of it: one request per design, each a job file written and fsynced at the lab and
at the mock.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agent.campaign.config import config_from_dict
from agent.campaign.runner import run_campaign
from oracles.base import ErrorClass, design_digest
from oracles.testing.lab import lab_jobs, start_lab, stop_lab

__all__ = ["main", "soak"]


def lab_peak_rss_kib(proc: subprocess.Popen[bytes]) -> int:
    """Stop the lab server cleanly; the peak RSS (KiB) of the children waited for so far."""
    stop_lab(proc)
    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def campaign_config(n: int, url: str, poll_s: float, seed: int) -> dict[str, Any]:
    """One iteration whose random batch of ``n`` designs goes to the oracle at once."""
    return {
        "name": "soak",
        "material": "mos2",
        "seed": seed,
        "targets": [{"value": 1.0, "window": 0.1, "hits": 10**6}],
        "oracle": {"name": "http", "settings": {"url": url, "timeout_s": 60.0, "retries": 5, "backoff_s": 0.2}},
        "initial": {"random": n},
        "loop": {"samples_per_target": 2 * n},
        "budget": {"oracle_calls": None, "iterations": 1},
        "ray": {"enabled": False},
        "retry": {"max_attempts": 3, "backoff_s": 0.5, "poll_interval_s": poll_s, "max_failure_rate": 1.0},
    }


def soak(
    n: int,
    workdir: Path,
    *,
    latency_s: float = 2.0,
    failure_rate: float = 0.1,
    poll_s: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Run one soak campaign in ``workdir``; return its figures (the checks are in them)."""
    token = secrets.token_hex(16)
    settings = {"latency_s": latency_s, "failure_rate": failure_rate, "noise_eV": 0.0, "seed": seed}
    lab_state = workdir / "lab"
    proc, url = start_lab(lab_state, token, settings)
    os.environ["INNLOOP_HTTP_TOKEN"] = token  # never in the config: it is copied into the campaign folder
    try:
        cfg = config_from_dict(campaign_config(n, url, poll_s, seed))
        t0 = time.perf_counter()
        run = run_campaign(cfg, workdir / "state")
        wall = time.perf_counter() - t0
        at_lab = lab_jobs(url, token)
    finally:
        os.environ.pop("INNLOOP_HTTP_TOKEN", None)
        lab_rss = lab_peak_rss_kib(proc)
    records = run.store.ledger.records()
    accepted = {p.stem: json.loads(p.read_text())["design"] for p in (lab_state / "jobs").glob("lab-*.json")}
    ids = Counter(r.result.handle.job_id for r in records)
    by_design: dict[str, list[Any]] = {}
    for r in records:
        by_design.setdefault(design_digest(r.result.handle.design), []).append(r.result)
    # a design measured again although its previous record was not a retryable failure
    again = sum(1 for rs in by_design.values() for prev in rs[:-1] if prev.error_class is not ErrorClass.INFRASTRUCTURE)
    statuses = Counter(r.result.status.value for r in records)
    final = Counter(
        "completed" if rs[-1].ok else f"{rs[-1].status.value}/{rs[-1].error_class}" for rs in by_design.values()
    )
    return {
        "designs": n,
        "results": len(records),
        "by_status": dict(sorted(statuses.items())),
        "final": dict(sorted(final.items())),
        "designs_recorded": len(by_design),
        "retries": len(records) - len(by_design),
        "lab_jobs": at_lab,
        "lost": len(set(accepted) - set(ids)),
        "unknown": len(set(ids) - set(accepted)),
        "duplicates": sum(c - 1 for c in ids.values()) + again,
        "in_flight": len((run.store.read_inflight() or {}).get("jobs", [])),
        "wall_s": wall,
        "results_per_s": len(records) / wall,
        "campaign_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "lab_rss_mib": lab_rss / 1024,
        "ledger_mib": run.store.ledger.path.stat().st_size / 2**20,
        "stopped": run.reason,
    }


ROWS = [
    ("designs", "{:d}"),
    ("results", "{:d}"),
    ("designs_recorded", "{:d}"),
    ("by_status", "{}"),
    ("final", "{}"),
    ("retries", "{:d}"),
    ("lab_jobs", "{:d}"),
    ("lost", "{:d}"),
    ("duplicates", "{:d}"),
    ("unknown", "{:d}"),
    ("in_flight", "{:d}"),
    ("wall_s", "{:.1f}"),
    ("results_per_s", "{:.1f}"),
    ("campaign_rss_mib", "{:.0f}"),
    ("lab_rss_mib", "{:.0f}"),
    ("ledger_mib", "{:.2f}"),
]


def table(runs: list[dict[str, Any]]) -> str:
    width = max(len(k) for k, _ in ROWS)
    lines = [f"{'':{width}}  " + "  ".join(f"run {i + 1:<10d}" for i in range(len(runs)))]
    for key, fmt in ROWS:
        lines.append(f"{key:{width}}  " + "  ".join(f"{fmt.format(r[key]):<14}" for r in runs))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.soak", description=__doc__.split("\n")[0])
    p.add_argument("--designs", nargs="+", type=int, default=[10000], help="designs in flight, one run each")
    p.add_argument("--latency-s", type=float, default=2.0, help="the mock's time per job")
    p.add_argument("--failure-rate", type=float, default=0.1)
    p.add_argument("--poll-s", type=float, default=0.5, help="retry.poll_interval_s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="keep the state here (default: a temporary folder, removed)")
    p.add_argument("--json", help="write every run here")
    args = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="innloop-soak-") as tmp:
        base = Path(args.workdir) if args.workdir else Path(tmp)
        for i, n in enumerate(args.designs):
            work = base / f"run-{i}-{n}"
            work.mkdir(parents=True, exist_ok=False)
            knobs = {"latency_s": args.latency_s, "failure_rate": args.failure_rate, "poll_s": args.poll_s}
            r = soak(n, work, seed=args.seed, **knobs)
            runs.append(r)
            print(
                f"{n} designs: {r['results']} results in {r['wall_s']:.1f} s ({r['results_per_s']:.1f}/s), "
                f"lost {r['lost']}, duplicates {r['duplicates']}, lab jobs {r['lab_jobs']}",
                flush=True,
            )
    print(table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    bad = any(r["lost"] or r["duplicates"] or r["unknown"] or r["lab_jobs"] != r["results"] for r in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
