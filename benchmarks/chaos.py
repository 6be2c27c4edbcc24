"""Random chaos: SIGKILL long campaigns at random moments, resume each time, count at the oracle.

For each oracle, an uninterrupted run of the chaos campaign (`agent.testing.chaos.chaos_config`:
the kill matrix's mock campaign made ``--iterations`` long, 10 % of the jobs failing, half
of them infrastructure failures that the loop re-sends) gives the reference; then the
same campaign in a fresh folder is started with ``innloop run`` again and again and each run
SIGKILLed after a delay drawn uniformly from ``--window`` seconds, until ``--kills`` kills
landed; the last run finishes. The table: kills, runs, ledger results, submissions counted
at the oracle (the mock's job files; the lab server's job files and ``/v1/stats``),
submissions beyond the ledger's attempts (paid twice), results lost, kills after which a
checkpoint did not verify or the ledger changed, whether the campaign learned what the
uninterrupted run learned, seconds. Oracles: ``mock`` (in process), ``http`` (a lab server
on loopback wrapping the same mock).

Run ``python -m benchmarks.chaos --kills 200 [--oracles mock,http] [--json OUT]``.
The loop's asynchronous mode is not in this table yet: it does not exist yet.
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
from agent.testing.chaos import ChaosReport, chaos, chaos_config, chaos_table
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
    oracle: str, kills: int, seed: int, iterations: int, window: tuple[float, float], tmp: Path
) -> ChaosReport:
    text = chaos_config(oracle, iterations)
    with _case(oracle, tmp / f"{oracle}-ref") as case:
        expected = reference(
            case, write_config(tmp / f"{oracle}-ref", text), tmp / f"{oracle}-ref" / "state", iterations, timeout=3600
        )
    root = tmp / f"{oracle}-chaos"
    with _case(oracle, root) as case:
        config = write_config(root, text)
        return chaos(oracle, case, config, root / "state", iterations, kills, seed, window, expected)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=200, help="SIGKILLs per oracle (default 200)")
    p.add_argument("--oracles", default="mock,http")
    p.add_argument("--iterations", type=int, default=60, help="the campaign's iteration budget (default 60)")
    p.add_argument("--window", type=float, nargs=2, default=(1.0, 7.0), help="kill delay range, s after a start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write every report here")
    args = p.parse_args(argv)
    reports = []
    with tempfile.TemporaryDirectory(prefix="innloop-chaos-") as tmp:
        for oracle in args.oracles.split(","):
            rep = run_oracle(oracle, args.kills, args.seed, args.iterations, tuple(args.window), Path(tmp))
            reports.append(rep)
            print(
                f"{oracle}: {rep.kills} kills, {'PASS' if rep.ok else 'FAIL: ' + '; '.join(rep.problems)}",
                file=sys.stderr,
            )
    print(chaos_table(reports))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=1))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
