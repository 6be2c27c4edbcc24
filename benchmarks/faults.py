"""Fault-injection benchmark: SIGKILL a campaign at every stage boundary and inside stages,
resume it with ``innloop run``, and count at the oracle that nothing was lost or paid twice.

For each oracle x kill point (`agent.testing.crash` explains the point grammar): the
killed run's exit status (-9: it really was SIGKILLed), the resumed run's, the results in
the ledger, the submissions counted at the oracle (the mock's job files, the lab server's
job files and ``/v1/stats``, slurmctld's log of accepted ``sbatch`` calls), designs
submitted twice, results lost (accepted by the oracle but not in the ledger, or the
other way round), whether every checkpoint verified and the campaign reached its budget,
whether it ended with the same observations as an uninterrupted run (where the oracle is
deterministic: ``-`` otherwise), the processes the killed run left running (Ray's agents;
reaped by the harness), and seconds. Oracles:

- ``mock``: the embedded emulator, training tiny models from iteration 1 on;
- ``ray``: the same with sampling on two Ray actors (``[ray] enabled``);
- ``http``: a lab server process on loopback wrapping the mock;
- ``vasp``: `oracles.vasp.VaspOracle` through a throw-away local SLURM
  (`oracles.testing.slurm`, needs root and ``scripts/install_slurm.sh``), with
  `oracles.testing.fake_vasp` as VASP.

Run ``python -m benchmarks.faults [--oracles mock,ray,http,vasp] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from agent.testing import backends as b
from agent.testing.kills import Case, Report, describe, kill_and_resume, outcome, reference, table, write_config

__all__ = ["MATRIX", "main"]

_STAGES = [f"{w}:{s}:{i}" for w, s, i in [("before", "retrain", 1), ("during", "retrain", 2), ("after", "retrain", 1)]]
_STAGES += ["after:sample:2", "after:refine:1", "after:choose:2", "during:measure:1", "after:measure:3"]
_STAGES += ["after:update:1", "during:checkpoint:2", "after:checkpoint:1"]
MATRIX: dict[str, list[str]] = {
    "mock": [
        *_STAGES,
        "submit:-:0",
        "submit:-:2",
        "pending:-:2",
        "append:-:1:1",
        "append:-:2:3",
        "rename:inflight:1:1",
        "rename:inflight:2:2",
        "rename:inflight:0:2",
        "rename:batch:1",
        "rename:manifest:1",
        "rename:metrics:2",
        "rename:campaign:2",
    ],
    "ray": ["ray:-:1:2", "ray:-:2:1"],
    "http": [
        "submit:-:0",
        "reply:-:1:1",
        "reply:-:2:2",
        "pending:-:1",
        "append:-:2:1",
        "rename:inflight:2:2",
        "rename:manifest:1",
        "after:measure:1",
    ],
    "vasp": [
        "submit:-:0",
        "submit:-:2",
        "pending:-:1",
        "append:-:1:1",
        "rename:inflight:2:2",
        "rename:campaign:1",
    ],
}


def _config(oracle: str, cluster: object) -> tuple[str, int]:
    if oracle in ("mock", "ray"):
        return b.mock_config(ray=oracle == "ray"), b.MOCK_ITERATIONS
    if oracle == "http":
        return b.small_config("http", "retries = 3\nbackoff_s = 0.1"), b.SMALL_ITERATIONS
    partition = str(getattr(cluster, "partition", "debug"))
    return b.small_config("vasp", b.vasp_settings(partition), poll_s=0.5), b.SMALL_ITERATIONS


def _case(oracle: str, root: Path, point: str, cluster: object) -> contextlib.AbstractContextManager[Case]:
    if oracle in ("mock", "ray"):
        return b.mock_case(root, point)
    if oracle == "http":
        return b.http_case(root)
    return b.vasp_case(root, cluster)


@contextlib.contextmanager
def _cluster(oracles: list[str], work: Path) -> Iterator[object]:
    if "vasp" not in oracles:
        yield None
        return
    from oracles.testing.slurm import missing_binaries, start_local_slurm  # psij and SLURM only for vasp

    if missing_binaries() or os.geteuid() != 0:
        print("vasp: skipped (SLURM needs root and scripts/install_slurm.sh)", flush=True)
        yield None
        return
    (work / "slurm").mkdir(parents=True, exist_ok=True)
    with start_local_slurm(work / "slurm") as cluster:
        yield cluster


def run_matrix(oracles: list[str], work: Path) -> list[Report]:
    reports: list[Report] = []
    with _cluster(oracles, work) as cluster:
        for oracle in oracles:
            if oracle == "vasp" and cluster is None:
                continue
            text, iterations = _config(oracle, cluster)
            root = work / oracle
            config = write_config(root, text)
            t0 = time.perf_counter()
            with _case(oracle, root / "ref", "none", cluster) as case:
                expected = reference(case, config, root / "ref" / "state", iterations)
            took = time.perf_counter() - t0
            print(f"{oracle}: uninterrupted run, {len(expected)} results ({took:.1f} s)", flush=True)
            if oracle == "ray":  # sampling on Ray draws what in-process sampling draws
                with b.mock_case(work / "mock" / "ref") as mock:
                    ref_mock = work / "mock" / "ref" / "state"
                    if ref_mock.exists():
                        equal = outcome(ref_mock, mock).observations == expected
                        print(f"ray: same observations as the mock without Ray: {equal}", flush=True)
            for n, point in enumerate(MATRIX[oracle]):
                with _case(oracle, root / f"k{n}", point, cluster) as case:
                    rep = kill_and_resume(oracle, case, config, root / f"k{n}" / "state", point, iterations, expected)
                print(describe(rep), flush=True)
                reports.append(rep)
    return reports


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--oracles", default="mock,ray,http,vasp", help="comma-separated: mock, ray, http, vasp")
    p.add_argument("--json", default=None, help="write every run's report here")
    p.add_argument("--keep", default=None, help="work folder to keep (default: a temporary one)")
    args = p.parse_args(argv)
    oracles = [o for o in args.oracles.split(",") if o]
    unknown = sorted(set(oracles) - set(MATRIX))
    if unknown:
        print(f"unknown oracles {unknown}; choose from {sorted(MATRIX)}", file=sys.stderr)
        return 2
    os.environ.setdefault("INNLOOP_TORCH_THREADS", "1")
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        reports = run_matrix(oracles, work)
    print()
    print(table(reports))
    passed = sum(r.ok for r in reports)
    print(f"\n{passed}/{len(reports)} kill points passed in {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=1))
    return 0 if passed == len(reports) else 1


if __name__ == "__main__":
    sys.exit(main())
