"""What `innloop run` shows on the console: one live view, a line per iteration, or nothing.

A terminal gets one `rich` live view redrawn in place (iteration, stage, oracle jobs,
hits per target against wanted and the families of its believed solution set that hold
one, elapsed time, budget left, the latest message); anything
else written to the console while it runs (a warning) is printed above it, never into it.
Where standard output is not a terminal (CI, ``nohup``, a pipe) redraws would only leave
escape codes in a log, so `LineView` prints one plain line per iteration to standard
output and messages to standard error. ``-q`` shows nothing until the final table.
The final hits table is a real table with units in its header (and each hit's family,
once the models have found families).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from agent.campaign.monitor import Monitor
from agent.campaign.state import CampaignState, families_covered, latest_families, missing_hits

__all__ = ["LineView", "LiveView", "families_text", "hits_table", "open_view"]


def families_text(covered: int | None, total: int | None, wanted: int | None) -> str:
    """``'6/10 families'``: families holding a hit of the ``total`` the models last found, or of
    the ``wanted`` ones a target asks for; ``''`` when there is nothing to say (no families
    yet and none asked for, or ``families = 1``, which keeps no families)."""
    if wanted == 1:
        return ""
    if covered is None:
        return "" if wanted is None else f"0/{wanted} families"
    return f"{covered}/{wanted or total} families"


def _clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Tally(Monitor):
    """The numbers both views show, kept up to date from the monitor's events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the live view redraws from its own thread
        self.t0 = time.time()
        self.state: CampaignState | None = None
        self.phase = "starting"
        self.batch = (0, 0, 0)  # results recorded, in flight, failed: the current batch
        self.last = ""
        self._families: tuple[CampaignState | None, list[str]] = (None, [])

    def started(self, state: CampaignState) -> None:
        with self.lock:
            self.state, self.phase = state, "starting"

    def stage(self, state: CampaignState, name: str) -> None:
        with self.lock:
            self.state, self.phase = state, name
            if name == "retrain":
                self.batch = (0, 0, 0)

    def jobs(self, done: int, in_flight: int, failed: int) -> None:
        with self.lock:
            self.batch = (done, in_flight, failed)

    def iteration(self, state: CampaignState) -> None:
        with self.lock:
            self.state, self.batch = state, (0, 0, 0)

    def message(self, text: str) -> None:
        with self.lock:
            self.last = text

    def set_phase(self, text: str) -> None:
        """A step outside the loop (starting Prefect or Ray, writing the report)."""
        with self.lock:
            self.phase = text

    # -- what is shown -------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        """Iteration, oracle results, jobs out, failures, hits, elapsed and budget left."""
        st = self.state
        done, out, failed = self.batch
        if st is None:
            return {"iteration": None, "done": done, "in_flight": out, "failed": failed, "targets": []}
        failed_before = sum(not r.result.ok for r in st.records)
        calls = st.calls + done
        b = st.config.budget
        wanted = [t.hits for t in st.config.targets]
        hits = [w - m for w, m in zip(wanted, missing_hits(st))]
        fams = self._families_of(st)
        elapsed = time.time() - self.t0
        return {
            "name": st.config.name,
            "iteration": st.iteration,
            "done": calls,
            "in_flight": out,
            "failed": failed_before + failed,
            "calls_left": None if b.oracle_calls is None else max(0, b.oracle_calls - calls - out),
            "time_left": None if b.wall_time_s is None else max(0.0, b.wall_time_s - st.elapsed_s - elapsed),
            "elapsed": elapsed,
            "targets": [
                (t.range.label(), t.short, h, w, f) for t, h, w, f in zip(st.config.targets, hits, wanted, fams)
            ],
        }

    def _families_of(self, st: CampaignState) -> list[str]:
        """Per target, `families_text` of ``st``; worked out once per state (the live view redraws
        four times a second, the state changes once per stage)."""
        seen, text = self._families
        if seen is not st:
            totals = [None if f is None else f.k for f in latest_families(st)]
            text = [families_text(c, k, t.families) for c, k, t in zip(families_covered(st), totals, st.config.targets)]
            self._families = (st, text)
        return text


class LiveView(_Tally):
    """One panel redrawn in place on a terminal (`rich.live.Live`)."""

    def __init__(self, console: Console, unit: str = "") -> None:
        super().__init__()
        self.unit = unit
        self.live = Live(
            get_renderable=self._render, console=console, refresh_per_second=4, transient=True, redirect_stderr=True
        )

    def _render(self) -> Group:
        with self.lock:
            c = self.counts()
            phase, last = self.phase, self.last
        head = Text.assemble(
            (c.get("name", "innloop") + "  ", "bold"),
            "" if c["iteration"] is None else f"iteration {c['iteration']} · ",
            (phase, "cyan"),
            f" · {_clock(time.time() - self.t0)} elapsed",
        )
        left = []
        if c.get("calls_left") is not None:
            left.append(f"{c['calls_left']} calls")
        if c.get("time_left") is not None:
            left.append(_clock(c["time_left"]))
        grid = Table.grid(padding=(0, 2))
        grid.add_row(
            "oracle",
            f"{c['done']} done · {c['in_flight']} out · {c['failed']} failed",
            ("left: " + ", ".join(left)) if left else "",
        )
        for label, _, hits, wanted, fams in c["targets"]:
            bar = ProgressBar(total=max(wanted, 1), completed=min(hits, wanted), width=24)
            said = f"{hits} / {wanted} hits" + (f" · {fams.replace('/', ' / ')}" if fams else "")
            grid.add_row(f"{label} {self.unit}".strip(), bar, said)
        parts: list[Any] = [head, grid]
        if last:
            parts.append(Text(last[:200], style="dim", overflow="ellipsis", no_wrap=True))
        return Group(*parts)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()


class LineView(_Tally):
    """One plain line per committed iteration on ``out``; messages on ``err``."""

    def __init__(self, out: TextIO, err: TextIO, unit: str = "") -> None:
        super().__init__()
        self.out, self.err, self.unit = out, err, unit

    def iteration(self, state: CampaignState) -> None:
        super().iteration(state)
        c = self.counts()
        m = state.history[-1]
        hits = ", ".join(
            f"{h}/{w} at {v} {self.unit}".rstrip() + (f" in {f}" if f else "") for _, v, h, w, f in c["targets"]
        )
        left = []
        if c["calls_left"] is not None:
            left.append(f"{c['calls_left']} calls")
        if c["time_left"] is not None:
            left.append(f"{c['time_left']:.0f} s")
        line = (
            f"iteration {m['iteration']}: {c['done']} oracle calls (+{m.get('new_results', 0)}, "
            f"{c['failed']} failed), hits {hits}; {c['elapsed']:.0f} s elapsed"
            + (f", {' and '.join(left)} left" if left else "")
        )
        self._write(self.out, line)

    def message(self, text: str) -> None:
        super().message(text)
        self._write(self.err, text)

    @staticmethod
    def _write(stream: TextIO, line: str) -> None:
        # not print(): inside a Prefect flow with log_prints, print() to stdout becomes a log record
        stream.write(line + "\n")
        stream.flush()


@contextmanager
def open_view(mode: str, unit: str = "", out: TextIO | None = None, err: TextIO | None = None) -> Iterator[_Tally]:
    """The view for ``mode``: ``live`` (a terminal), ``lines`` (anything else) or ``quiet``."""
    out = out or sys.stdout
    err = err or sys.stderr
    if mode == "live":
        view = LiveView(Console(file=out), unit)
        view.start()
        try:
            yield view
        finally:
            view.stop()
    elif mode == "lines":
        yield LineView(out, err, unit)
    else:
        yield _Tally()


def _num(v: float | str) -> str:
    """Four or five significant figures in at most seven characters: 2.832, 94.88, 115.2, -0.054;
    a category's name and an integer as they are."""
    if isinstance(v, str | int):
        return str(v)
    a = abs(v)
    return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 10 else f"{v:.3f}" if a >= 0.0005 or a == 0 else f"{v:.1e}"


def hits_table(status: dict[str, Any], units: dict[str, str], target: str, target_unit: str) -> Table:
    """The campaign's diverse hits per target, one row each, units in the header; then each
    ``[[constraints]]`` value the hit satisfied (e.g. its strain energy); last, the family each
    hit lies in (`agent.campaign.runner.campaign_status`) once there are families."""

    def head(name: str, unit: str) -> str:
        return f"{name} ({unit})" if unit else name

    names: Sequence[str] = list(units)
    family = "family" not in (*names, target) and any(t.get("families_total") is not None for t in status["targets"])
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column(head("target", target_unit), justify="right", no_wrap=True)
    table.add_column("#", justify="right")
    for n in names:
        table.add_column(head(n, units[n]), justify="right")
    table.add_column(head(target, target_unit), justify="right")
    limited = [c["property"] for c in status.get("constraints", [])]
    for n in limited:
        table.add_column(n, justify="right")
    if family:
        table.add_column("family", justify="right")
    for t in status["targets"]:
        label = t["label"]
        if not t["designs"]:
            table.add_row(
                label, "-", *["" for _ in names], "no hits yet", *["" for _ in limited], *([""] if family else [])
            )
        for i, row in enumerate(t["designs"], 1):
            where = row.get("family") if family else None
            cells = [_num(row[n]) for n in names]
            table.add_row(
                label if i == 1 else "",
                str(i),
                *cells,
                f"{row[target]:.3f}",
                *[_num(row[n]) for n in limited],
                *([] if not family else ["-" if where is None else str(where)]),
            )
        table.add_section()
    return table
