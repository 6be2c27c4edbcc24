"""Random chaos: SIGKILL a running campaign at random moments, resume it each time, and
count at the oracle at the end.

Why beside the named kill points (`agent.testing.kills`): those prove each stage boundary
and each write; a kill at a random moment also lands where nobody thought to look (in an
import, in Prefect's or Ray's start-up, between two polls, half way through a retry's
backoff). `chaos` starts ``innloop run`` on one state folder again and again, kills each
run after a random delay until ``kills`` kills have landed, then lets the last run finish.

Checked after every kill: every committed checkpoint verifies and the ledger only grew
(nothing it held changed). Checked at the end, at the oracle (its job files), with
infrastructure failures re-sent by the loop (so one design may be measured more than
once): every job the oracle accepted has exactly one ledger result and every ledger
result is a job the oracle knows (nothing lost), each design reached the oracle exactly as
often as the ledger holds it (once per attempt: nothing paid twice), and -- the oracle
being deterministic -- the campaign learned the same observations as a run never killed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from agent.testing.kills import (
    Case,
    ending,
    fixed_width,
    outcome,
    session_leftovers,
    start_campaign_process,
    write_config,
)

__all__ = [
    "ASYNC_CHAOS_ITERATIONS",
    "ASYNC_LATENCY",
    "ASYNC_LOOP",
    "CHAOS_ITERATIONS",
    "ChaosReport",
    "chaos",
    "chaos_config",
    "chaos_rounds",
    "chaos_table",
]

CHAOS_ITERATIONS = 5  # 20 kills in (1, 5) s reach iteration 1 of them on this machine: the last run ends it
# refills: 20 kills in (1, 5) s reached refill 13 on this machine idle, 17 kills refill 9
# beside the rest of the suite: 22 leaves the kills room on a fast day, the last run ~10 refills
ASYNC_CHAOS_ITERATIONS = 22


def chaos_config(oracle: str = "mock", iterations: int = CHAOS_ITERATIONS, mode: str = "batch") -> str:
    """A campaign long enough to be killed many times: the kill matrix's mock campaign (tiny
    models trained from iteration 1), ``iterations`` long, with 10 % of its jobs failing (half
    infrastructure: re-sent by the loop) and 0.05 s of latency; ``oracle`` ``http``: the same
    mock behind the lab server (its url and token from the environment).

    ``mode = "async"``: the loop's asynchronous mode (`ASYNC_LOOP`: 8 jobs in flight, a
    refill every 2 results), the mock's run times heavy-tailed (log-normal, median 0.1 s,
    95th percentile 5.2 times it) and its failures all infrastructure, as on a cluster."""
    from agent.testing.backends import MOCK_CONFIG, MOCK_ITERATIONS  # the kill matrix's campaign

    text = MOCK_CONFIG.replace(f"iterations = {MOCK_ITERATIONS}", f"iterations = {iterations}")
    text = text.replace("hits = 50", "hits = 10000")  # the iteration budget ends it, never the hits
    text = text.replace("[budget]\n", "[budget]\noracle_calls = 100000\n")  # nor the default call budget
    if mode == "async":
        text = text.replace("[loop]\n", f"[loop]\n{ASYNC_LOOP}")
    if oracle == "http":
        return text + '[oracle]\nname = "http"\n'  # the server's mock fails and waits (its settings)
    if mode == "async":
        return text + "[oracle.settings]\nfailure_rate = 0.1\ninfrastructure_share = 1.0\n" + ASYNC_LATENCY
    return text + "[oracle.settings]\nfailure_rate = 0.1\nlatency_s = 0.05\n"


ASYNC_LOOP = 'mode = "async"\nmax_in_flight = 8\nrefill = 2\n'
ASYNC_LATENCY = "latency_s = 0.1\nlatency_sigma = 1.0\n"


@dataclass
class ChaosReport:
    """One chaos run against one oracle: the row of the benchmark's table."""

    oracle: str
    kills: int = 0  # SIGKILLs that landed on a running campaign
    rounds: int = 1  # campaigns run to their end (`chaos_rounds`), each in a fresh folder
    runs: int = 0  # processes started, the finishing ones included
    results: int = 0
    submissions: int = 0
    duplicated: int = 0  # submissions beyond the ledger's attempts of their design
    lost: int = 0  # accepted jobs without a ledger result, or ledger results the oracle never had
    corrupt: int = 0  # kills after which a checkpoint did not verify or the ledger changed
    same: bool | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    reached: list[int] = field(default_factory=list)  # the last committed iteration after each kill

    @property
    def ok(self) -> bool:
        return not self.problems


def chaos(
    oracle: str,
    case: Case,
    config: Path,
    state: Path,
    iterations: int,
    kills: int,
    seed: int = 0,
    window: tuple[float, float] = (1.0, 7.0),
    expected: list[str] | None = None,
    timeout: float = 600.0,
    short_ok: bool = False,
    drains: bool = False,
) -> ChaosReport:
    """Kill ``innloop run`` after a delay drawn uniformly from ``window`` (seconds after its
    start) until ``kills`` kills landed, then let it finish; ``expected``: the observations of
    an uninterrupted run (None: the oracle is not deterministic, or the loop is asynchronous:
    what comes back first depends on the clock). A campaign that ends before ``kills`` kills
    landed is a problem unless ``short_ok``. ``drains``: an asynchronous campaign, which ends
    with one iteration collecting its jobs still out (`agent.testing.kills.ending`)."""
    rep, rng, t0 = ChaosReport(oracle), random.Random(seed), time.perf_counter()
    held: list[str] = []  # the ledger's designs after the last kill
    while True:
        rep.runs += 1
        proc = start_campaign_process(config, state, "none", case.env)
        try:
            if rep.kills < kills:
                proc.wait(timeout=rng.uniform(*window))
            else:
                proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()  # reaps it and closes its pipe
            session_leftovers(proc.pid, grace_s=5.0)
            if rep.kills >= kills:
                rep.problems.append(f"the last run did not finish within {timeout:g} s")
                break
            rep.kills += 1
            now = outcome(state, case)
            if now.problems or now.designs[: len(held)] != held:
                rep.corrupt += 1
                rep.problems.append(f"after kill {rep.kills}: {now.problems or 'the ledger changed what it held'}")
            held = now.designs
            rep.reached.append(now.last)
            continue
        _, err = proc.communicate()
        if proc.returncode != 0:
            rep.problems.append(f"run {rep.runs} exited {proc.returncode} unkilled: {err[-1500:]}")
        elif rep.kills < kills and not short_ok:
            rep.problems.append(f"the campaign finished after {rep.kills} kills, before the {kills} asked")
        break
    rep.seconds = time.perf_counter() - t0
    _count(rep, case, state, iterations, expected, drains)
    return rep


def chaos_rounds(
    oracle: str,
    make_case: Callable[[Path], AbstractContextManager[Case]],
    text: str,
    root: Path,
    iterations: int,
    kills: int,
    seed: int = 0,
    window: tuple[float, float] = (1.0, 7.0),
    expected: list[str] | None = None,
    drains: bool = False,
) -> ChaosReport:
    """`chaos` campaign after campaign, each in a fresh folder with a fresh oracle
    (``make_case(folder)``) and config ``text``, until ``kills`` kills landed in all: a
    campaign short enough to check against an uninterrupted run still takes any number of
    kills. The figures are the rounds' sums; every round is checked at its end."""
    total = ChaosReport(oracle, rounds=0)
    while total.kills < kills:
        total.rounds += 1
        folder = root / f"round-{total.rounds}"
        with make_case(folder) as case:
            config = write_config(folder, text)
            left = kills - total.kills
            at = folder / "state"
            one = chaos(
                oracle, case, config, at, iterations, left, seed + total.rounds, window, expected, drains=drains
            )
        if one.kills == 0 and not one.problems and total.rounds > 3:
            total.problems.append("no kill lands: the campaign ends within the kill window")
            break
        for name in ("kills", "runs", "results", "submissions", "duplicated", "lost", "corrupt", "seconds"):
            setattr(total, name, getattr(total, name) + getattr(one, name))
        total.same = None if one.same is None else bool(one.same and total.same is not False)
        total.problems += [f"round {total.rounds}: {p}" for p in one.problems if "before the" not in p]
    return total


def _count(
    rep: ChaosReport, case: Case, state: Path, iterations: int, expected: list[str] | None, drains: bool = False
) -> None:
    """The end checks at the oracle (module docstring)."""
    after = outcome(state, case)
    rep.problems += after.problems
    accepted = case.accepted()
    rep.results, rep.submissions = len(after.ids), len(accepted)
    ids = [i for i, _ in accepted]
    rep.lost = len(set(ids) ^ set(after.ids)) + (len(after.ids) - len(set(after.ids)))
    paid, held = Counter(d for _, d in accepted), Counter(after.designs)
    rep.duplicated = sum((paid - held).values())
    ended, rep.same = ending(after, case, len(accepted), iterations, expected, drains=drains)
    rep.problems += ended
    if rep.lost:
        rep.problems.append(f"{rep.lost} results are missing from the ledger, unknown to the oracle or doubled")
    if rep.duplicated or paid != held:
        rep.problems.append(f"the oracle measured designs {sum((paid - held).values())} times more than the ledger")


def chaos_table(reports: list[ChaosReport]) -> str:
    """The chaos runs as a fixed-width table."""
    head: tuple[str, ...] = ("oracle", "kills", "campaigns", "runs", "results", "submitted", "duplicated", "lost")
    head += ("corrupt", "same", "s", "pass")
    rows = [head] + [
        (
            r.oracle,
            str(r.kills),
            str(r.rounds),
            str(r.runs),
            str(r.results),
            str(r.submissions),
            str(r.duplicated),
            str(r.lost),
            str(r.corrupt),
            "-" if r.same is None else ("yes" if r.same else "NO"),
            f"{r.seconds:.0f}",
            "PASS" if r.ok else "FAIL",
        )
        for r in reports
    ]
    return fixed_width(rows)
