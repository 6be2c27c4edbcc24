"""First-run benchmark: wall seconds per phase of ``innloop run`` on a new machine and on a warm one.

Why: the README promises that ``innloop run`` (the default campaign, mock oracle) is
quick on two cores, and a user's first run is the one that pays for every cold cache:
Prefect's database, numba's compiled code, matplotlib's font list, the report's cache.
This measures each phase in its own fresh process, twice:

- ``first``: every cache emptied before each phase: a fresh ``PREFECT_HOME``, and
  ``NUMBA_CACHE_DIR``, ``MPLCONFIGDIR`` and ``INNLOOP_CACHE_DIR`` pointed at empty
  folders of this benchmark (so nothing depends on, or touches, the caches under
  ``$HOME`` or in the virtual environment);
- ``second``: the same phases again with those folders kept (a warm machine), each
  campaign still in a fresh state folder.

Phases: ``prefect`` (a trivial flow against Prefect's temporary server, start to
stop), ``ray`` (``ray.init(num_cpus=2, include_dashboard=False)`` and shutdown),
``campaign`` (``innloop run --no-prefect --no-ray``), ``report`` (`build_report`'s own
seconds, from the report's ``summary.json``) and ``report process`` (``innloop report``
as a user runs it, imports included), and ``total`` (``innloop run``: the README's
command, Prefect, Ray, the campaign and its report, in a fresh state folder).

``python -m benchmarks.first_run [--phases ...] [--config TOML] [--json PATH] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.campaign.config import load_config

__all__ = ["PHASES", "ROUNDS", "Machine", "format_table", "main", "measure", "timed"]

PHASES = ("prefect", "ray", "campaign", "report", "report process", "total")
ROUNDS = ("first", "second")
CACHES = {"PREFECT_HOME": "prefect", "NUMBA_CACHE_DIR": "numba", "MPLCONFIGDIR": "matplotlib"}
CACHES["INNLOOP_CACHE_DIR"] = "innloop"

PREFECT_FLOW = (
    "from prefect import flow\n"
    "@flow(name='first-run-bench', persist_result=False)\n"
    "def trivial() -> int:\n"
    "    return 1\n"
    "assert trivial() == 1\n"
)
RAY_START = (
    "import ray\n"
    "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)\n"
    "assert ray.cluster_resources()['CPU'] == 2\n"
    "ray.shutdown()\n"
)


@dataclass(frozen=True)
class Machine:
    """The caches a first run pays for, in folders of this benchmark (``root/<name>``)."""

    root: Path

    def empty(self) -> None:
        """A new machine: every cache folder removed and made again, empty."""
        for name in CACHES.values():
            shutil.rmtree(self.root / name, ignore_errors=True)
            (self.root / name).mkdir(parents=True)

    def env(self) -> dict[str, str]:
        """This process's environment with the caches pointed here and no Prefect server named."""
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env |= {var: str(self.root / name) for var, name in CACHES.items()}
        env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
        for name in CACHES.values():
            (self.root / name).mkdir(parents=True, exist_ok=True)
        return env


def timed(cmd: Sequence[str], env: dict[str, str], timeout: float, cwd: Path | None = None) -> float:
    """Wall seconds of ``cmd``; raises with its last output when it fails."""
    t0 = time.perf_counter()
    done = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"{' '.join(cmd[:4])} … exited {done.returncode}:\n{tail}")
    return wall


def _innloop(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", *args]


def _campaign_name(config: str | None) -> str:
    return load_config(config).name


def measure(
    work: Path,
    *,
    phases: Sequence[str] = PHASES,
    rounds: Sequence[str] = ROUNDS,
    config: str | None = None,
    timeout: float = 900.0,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, dict[str, float]]:
    """``{round: {phase: seconds}}`` for the phases asked, run in order, each round after the other.

    ``report`` needs a campaign: the round's ``campaign`` phase when asked, else one run
    for it (not timed). Every campaign gets a fresh state folder under ``work``.
    """
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phases {sorted(unknown)}; known: {list(PHASES)}")
    machine = Machine(work / "machine")
    name = _campaign_name(config)
    cfg = [config] if config else []
    out: dict[str, dict[str, float]] = {}
    for rnd in rounds:
        got: dict[str, float] = {}
        state = work / rnd / "campaign-state"

        def run(phase: str, cmd: list[str], rnd: str = rnd) -> float:
            if rnd == "first":
                machine.empty()
            seconds = timed(cmd, machine.env(), timeout)
            log(f"{rnd} {phase}: {seconds:.1f} s")
            return seconds

        if "prefect" in phases:
            got["prefect"] = run("prefect", [sys.executable, "-c", PREFECT_FLOW])
        if "ray" in phases:
            got["ray"] = run("ray", [sys.executable, "-c", RAY_START])
        reporting = {"report", "report process"} & set(phases)
        if "campaign" in phases or reporting:
            seconds = run("campaign", _innloop("run", *cfg, "--no-prefect", "--no-ray", "--state", str(state), "-q"))
            if "campaign" in phases:
                got["campaign"] = seconds
        if reporting:
            wall = run("report", _innloop("report", name, "--state", str(state), "-q"))
            summary = json.loads((state / name / "report" / "summary.json").read_text())
            got["report"] = float(sum(summary["seconds"].values()))
            got["report process"] = wall
            got = {k: v for k, v in got.items() if k in phases}
        if "total" in phases:
            got["total"] = run("total", _innloop("run", *cfg, "--state", str(work / rnd / "total-state"), "-q"))
        out[rnd] = got
    return out


def format_table(results: dict[str, dict[str, float]]) -> str:
    """Rows: phases; columns: rounds (seconds, ``-`` where a phase was not run)."""
    rounds = list(results)
    phases = [p for p in PHASES if any(p in r for r in results.values())]
    head = f"{'phase':<16}" + "".join(f"{r + ' run':>12}" for r in rounds)
    lines = [head, "-" * len(head)]
    for p in phases:
        cells = "".join(f"{results[r][p]:>12.1f}" if p in results[r] else f"{'-':>12}" for r in rounds)
        lines.append(f"{p:<16}{cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.first_run", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES, metavar="PHASE", help=str(PHASES))
    p.add_argument("--rounds", nargs="+", default=list(ROUNDS), choices=ROUNDS)
    p.add_argument("--config", help="campaign TOML (default: the shipped default campaign)")
    p.add_argument("--json", help="write the seconds here")
    p.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per phase")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="innloop-first-run-") as tmp:
        work = Path(args.keep or tmp)
        if args.keep and any(work.iterdir() if work.is_dir() else []):
            raise SystemExit(f"--keep {work}: not empty (a first run needs fresh folders)")
        work.mkdir(parents=True, exist_ok=True)
        results = measure(
            work,
            phases=args.phases,
            rounds=args.rounds,
            config=args.config,
            timeout=args.timeout,
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )
    print(format_table(results))
    if args.json:
        payload: dict[str, Any] = {"seconds": results, "phases": args.phases, "cpus": os.cpu_count()}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
