"""Kill a campaign at a point, resume it with ``innloop run``, and count at the oracle.

`kill_and_resume` runs `agent.testing.crash` until its SIGKILL, then ``innloop run``
on the same state folder, and reports what a user would want to be sure of: every result
the oracle gave is in the ledger exactly once, no design reached the oracle twice, every
committed checkpoint verifies, the campaign reached its goal (its iteration budget), and
-- where the oracle is deterministic -- the ledger holds the same observations as an
uninterrupted run (`reference`), in `agent.campaign.state.canonical_order` (by iteration, design,
arrival): the order the campaign learns in, which a scheduler finishing jobs in another
order does not change.

Counting happens at the oracle, never in our own bookkeeping: the mock's job files, the
lab server's job files and ``/v1/stats``, the scheduler's log of accepted ``sbatch``
calls. The back ends (`MockBackend`, `HttpBackend`, `VaspBackend`) set one case up each.

Processes: each run gets its own session, so whatever it started (Ray's agents and
actors) can be found after it ended; what is still alive a few seconds later is counted
and SIGKILLed by pid. A SIGKILLed driver takes Ray's GCS, raylet and actors with it, but
its dashboard and runtime-env agents outlive it (``reaped``); a run that exits normally
must leave nothing behind (a problem otherwise).

Determinism: MKL picks float32 kernels by memory alignment, so the same model can give
results that differ in the last bit between two processes (the mock's gaps did, once Ray
was loaded), and a last bit is enough to choose another batch later. `ENV` asks MKL for
its reproducible code path in every process a case starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.campaign.state import canonical_order
from agent.campaign.store import CampaignStore
from oracles.base import Result, design_digest

__all__ = [
    "Case",
    "Report",
    "describe",
    "ending",
    "fixed_width",
    "kill_and_resume",
    "outcome",
    "reference",
    "run_campaign_process",
    "session_leftovers",
    "start_campaign_process",
    "table",
]

NAME = "crash"  # the campaign name of every kill config
# bitwise-reproducible math across processes: MKL's reproducible path, one fixed thread
ENV = {"MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE", "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
ENV |= {"INNLOOP_TORCH_THREADS": "1"}
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    """One set-up of a back end: the environment of both runs and how to count at the oracle."""

    env: dict[str, str]
    accepted: Callable[[], list[tuple[str, str]]]  # (job id at the oracle, design digest), one per submission
    ledger_id: Callable[[Result], str] = lambda r: r.handle.job_id  # a ledger result's id in the same terms
    stats: Callable[[], int] | None = None  # the oracle's own count of jobs, when it has one


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    leftovers: int = 0  # processes of the run's session alive after the grace period (then killed)
    seconds: float = 0.0


@dataclass
class Report:
    """One kill point against one oracle: the row of the benchmark's table."""

    oracle: str
    point: str
    killed: int = 0
    resumed: int = 0
    results: int = 0
    submissions: int = 0
    duplicates: int = 0
    lost: int = 0
    checkpoints: bool = False
    same: bool | None = None
    reaped: int = 0  # processes the killed run left running (Ray's agents): found and SIGKILLed here
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def session_leftovers(sid: int, grace_s: float = 10.0) -> int:
    """Processes of session ``sid`` (not zombies) still running after ``grace_s``; SIGKILLs them."""

    def members() -> list[int]:
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid and fields[0] != "Z":
                    out.append(int(stat.parent.name))
        return out

    deadline = time.time() + grace_s
    while (left := members()) and time.time() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(left)


def start_campaign_process(config: Path, state: Path, point: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``point`` ``none``: ``innloop run CONFIG`` as a user resumes; else the crash driver. In a
    session of its own (`session_leftovers`), output piped."""
    if point == "none":
        cmd = [sys.executable, "-m", "agent.cli", "run", str(config), "--state", str(state), "--no-prefect", "-q"]
    else:
        cmd = [sys.executable, "-m", "agent.testing.crash", str(config), str(state), point]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | ENV | env,
        cwd=ROOT,
        start_new_session=True,
    )


def run_campaign_process(config: Path, state: Path, point: str, env: dict[str, str], timeout: float = 300) -> Run:
    """`start_campaign_process`, waited for (SIGKILLed after ``timeout``)."""
    t0 = time.perf_counter()
    proc = start_campaign_process(config, state, point, env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(killed after {timeout:g} s)"
    seconds = time.perf_counter() - t0
    return Run(proc.returncode, out, err, session_leftovers(proc.pid), seconds)


@dataclass
class Outcome:
    designs: list[str]  # digests of the ledger's designs, in ledger order
    observations: list[str]  # the same in `agent.campaign.state.canonical_order`: what the campaign learns from
    ids: list[str]  # the ledger's results as ids at the oracle
    last: int
    problems: list[str]
    in_flight: int = 0  # jobs the campaign still holds at the oracle (``inflight.json``)


def outcome(state: Path, case: Case) -> Outcome:
    """Read the ledger (checksums, exactly-once job ids) and verify every committed iteration."""
    store = CampaignStore(state, NAME)
    if not store.exists():
        return Outcome([], [], [], -1, [])
    problems = []
    try:
        records = store.ledger.records()
    except Exception as exc:
        return Outcome([], [], [], -1, [f"ledger: {exc}"])
    last = store.last_completed()
    for i in range(last + 1):
        try:
            store.verify_iteration(i)
        except Exception as exc:
            problems.append(f"checkpoint {i}: {exc}")
    designs = [design_digest(r.result.handle.design) for r in records]
    observations = [design_digest(r.result.handle.design) for r in canonical_order(records)]
    try:
        flying = len((store.read_inflight() or {}).get("jobs", []))
    except Exception as exc:
        flying, problems = 0, [*problems, f"inflight.json: {exc}"]
    ids = [case.ledger_id(r.result) for r in records]
    return Outcome(designs, observations, ids, last, problems, flying)


def reference(case: Case, config: Path, state: Path, iterations: int, timeout: float = 300) -> list[str]:
    """The ledger's designs of an uninterrupted run (``AssertionError`` when it fails)."""
    done = run_campaign_process(config, state, "none", case.env, timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    out = outcome(state, case)
    assert not out.problems and out.last == iterations - 1, (out.problems, out.last)
    accepted = case.accepted()
    assert sorted(d for _, d in accepted) == sorted(out.designs), "the reference run's oracle disagrees"
    return out.observations


def kill_and_resume(
    oracle: str,
    case: Case,
    config: Path,
    state: Path,
    point: str,
    iterations: int,
    expected: list[str] | None,
) -> Report:
    """Kill at ``point``, resume, and check; ``expected``: the reference observations (None: not deterministic)."""
    rep = Report(oracle, point)
    t0 = time.perf_counter()
    killed = run_campaign_process(config, state, point, case.env)
    rep.killed = killed.returncode
    if killed.returncode != -9:
        rep.problems.append(f"the kill did not happen (exit {killed.returncode}): {killed.stderr[-1500:]}")
    before = outcome(state, case)
    resumed = run_campaign_process(config, state, "none", case.env)
    rep.resumed = resumed.returncode
    rep.reaped = killed.leftovers
    rep.seconds = time.perf_counter() - t0
    if resumed.returncode != 0:
        rep.problems.append(f"the resumed run exited {resumed.returncode}: {resumed.stderr[-1500:]}")
    after = outcome(state, case)
    rep.problems += after.problems
    accepted = case.accepted()
    rep.results, rep.submissions = len(after.ids), len(accepted)
    rep.duplicates = len(accepted) - len({d for _, d in accepted})
    ids = {i for i, _ in accepted}
    rep.lost = len(ids - set(after.ids)) + len(set(after.ids) - ids)
    rep.checkpoints = not after.problems and after.last == iterations - 1
    ended, rep.same = ending(after, case, len(accepted), iterations, expected)
    rep.problems += ended
    if after.designs[: len(before.designs)] != before.designs:
        rep.problems.append("the ledger changed what it held before the resume")
    if rep.duplicates:
        rep.problems.append(f"{rep.duplicates} designs were submitted twice")
    if rep.lost:
        rep.problems.append(f"{rep.lost} results are missing from the ledger or unknown to the oracle")
    if resumed.leftovers:
        rep.problems.append(f"{resumed.leftovers} processes of the resumed run were still running after it exited")
    return rep


def ending(
    after: Outcome, case: Case, accepted: int, iterations: int, expected: list[str] | None, *, drains: bool = False
) -> tuple[list[str], bool | None]:
    """What every harness checks of a campaign at its end: ``(problems, same)``. It reached its
    iteration budget (``drains``, async mode: or one iteration more, the one collecting the
    jobs still out) with no job left in flight; the oracle's own count (where it keeps one)
    agrees with its ``accepted`` job files; and, where ``expected`` (an uninterrupted run's
    observations) is given, it learned the same (``same``; None without ``expected``)."""
    problems = []
    ends = (iterations - 1, iterations) if drains else (iterations - 1,)
    if after.last not in ends:
        problems.append(f"the campaign stopped after iteration {after.last}, not {' or '.join(map(str, ends))}")
    if after.in_flight:
        problems.append(f"the campaign ended with {after.in_flight} jobs still in flight")
    if case.stats is not None and case.stats() != accepted:
        problems.append(f"the oracle counts {case.stats()} jobs, its job files {accepted}")
    same = None if expected is None else after.observations == expected
    if same is False:
        problems.append("the campaign measured other designs than an uninterrupted one")
    return problems, same


def fixed_width(rows: list[tuple[str, ...]]) -> str:
    """Rows of cells (the first the header) as a fixed-width text table, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_config(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{NAME}.toml"
    path.write_text(text)
    return path


def table(reports: list[Report]) -> str:
    """The kill matrix as a fixed-width table."""
    head: tuple[str, ...] = ("oracle", "kill point", "killed", "resumed", "results", "submitted", "dup", "lost")
    head += ("ckpt", "same", "reaped", "s", "pass")
    rows = [head] + [
        (
            r.oracle,
            r.point,
            str(r.killed),
            str(r.resumed),
            str(r.results),
            str(r.submissions),
            str(r.duplicates),
            str(r.lost),
            "ok" if r.checkpoints else "BAD",
            "-" if r.same is None else ("yes" if r.same else "NO"),
            str(r.reaped),
            f"{r.seconds:.0f}",
            "PASS" if r.ok else "FAIL",
        )
        for r in reports
    ]
    return fixed_width(rows)


def describe(r: Report) -> str:
    verdict = "PASS" if r.ok else "FAIL: " + "; ".join(p.splitlines()[0] for p in r.problems)
    return (
        f"{r.oracle:5s} {r.point:22s} killed {r.killed}, resumed {r.resumed}, {r.results} results, "
        f"{r.submissions} submitted, {r.duplicates} dup, {r.lost} lost ({r.seconds:.1f} s): {verdict}"
    )
