"""Random chaos: SIGKILL campaigns at random moments, resume each time, count at the oracle.

For each oracle, an uninterrupted run of the chaos campaign (`agent.testing.chaos.chaos_config`:
the kill matrix's mock campaign made ``--iterations`` long, 10 % of the jobs failing, half
of them infrastructure failures that the loop re-sends) gives the reference. Then the same
campaign is started with ``innloop run`` again and again, each run SIGKILLed after a delay
drawn uniformly from ``--window`` seconds; a campaign that finished is checked and the next
starts in a fresh folder with a fresh oracle, until ``--kills`` kills landed in all
(`agent.testing.chaos.chaos_rounds`).

The table: kills, campaigns, runs, ledger results, submissions counted at the oracle (the
mock's job files; the lab server's job files and ``/v1/stats``), submissions beyond the
ledger's attempts (paid twice), results lost, kills after which a checkpoint did not verify
or the ledger changed, whether every campaign learned what the uninterrupted run learned,
seconds. Oracles: ``mock`` (in process), ``http`` (a lab server on loopback wrapping the
same mock).

``--modes batch,async``: each oracle in both of the loop's modes. In async mode (rows
"… async") ``--async-iterations`` refills of 8 jobs in flight and 2 results each, the
mock's run times heavy-tailed and its failures infrastructure ones; jobs chosen by several
iterations are in flight at most kills. There is no reference run there (what comes back
first depends on the clock, so "same" is "-"); every other check is the same, plus: the
campaign ends with one iteration that collects the jobs still out, and nothing in flight.

Run ``python -m benchmarks.chaos --kills 200 [--oracles mock,http] [--modes batch,async] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from agent.testing import backends as b
from agent.testing.chaos import ChaosReport, chaos_config, chaos_rounds, chaos_table
from agent.testing.kills import Case, reference, write_config

__all__ = ["main"]


@contextlib.contextmanager
def _case(oracle: str, root: Path) -> Iterator[Case]:
    if oracle == "mock":
        with b.mock_case(root) as case:
            yield case
    else:
        with b.http_case(root, latency_s=0.05, failure_rate=0.1) as case:
            yield case


def run_oracle(
    oracle: str, kills: int, seed: int, iterations: int, window: tuple[float, float], tmp: Path, mode: str = "batch"
) -> ChaosReport:
    """``kills`` kills of ``oracle``'s chaos campaigns; batch mode against an uninterrupted
    reference run, async mode without one (what comes back first depends on the clock)."""
    text = chaos_config(oracle, iterations, mode)
    expected = None
    if mode == "batch":
        ref = tmp / f"{oracle}-ref"
        with _case(oracle, ref) as case:
            expected = reference(case, write_config(ref, text), ref / "state", iterations, timeout=3600)
    folder = tmp / f"{oracle}-{mode}-chaos"
    report = chaos_rounds(
        oracle, lambda f: _case(oracle, f), text, folder, iterations, kills, seed, window, expected, mode == "async"
    )
    report.oracle = oracle if mode == "batch" else f"{oracle} async"
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=200, help="SIGKILLs per oracle (default 200)")
    p.add_argument("--oracles", default="mock,http")
    p.add_argument("--modes", default="batch,async", help="the loop's modes (default batch,async)")
    p.add_argument("--iterations", type=int, default=20, help="each campaign's iteration budget (default 20)")
    p.add_argument(
        "--async-iterations", type=int, default=60, help="an async campaign's iteration budget: refills (default 60)"
    )
    p.add_argument("--window", type=float, nargs=2, default=(1.0, 7.0), help="kill delay range, s after a start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write every report here")
    args = p.parse_args(argv)
    reports = []
    with tempfile.TemporaryDirectory(prefix="innloop-chaos-") as tmp:
        for mode in args.modes.split(","):
            for oracle in args.oracles.split(","):
                n = args.iterations if mode == "batch" else args.async_iterations
                rep = run_oracle(oracle, args.kills, args.seed, n, tuple(args.window), Path(tmp), mode)
                reports.append(rep)
                print(
                    f"{rep.oracle}: {rep.kills} kills, {'PASS' if rep.ok else 'FAIL: ' + '; '.join(rep.problems)}",
                    file=sys.stderr,
                    flush=True,
                )
    print(chaos_table(reports))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=1))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
