"""``innloop run``: start or resume a campaign, show it while it runs, stop cleanly when asked.

This is the first command a person types, so it owns three things the loop does not:

- **the console**: one view (`agent.cli.console`) and nothing else. Prefect's per-task INFO
  records go to Prefect (its UI and API logs), Ray's start-up chatter is dropped, unless
  ``-v``; the final hits table is printed after the view is gone.
- **a Prefect API that answers** before the flow starts (`flows.server.ensure_api`): the
  first run on a fresh machine waits for the temporary server's database instead of
  failing, and a server that cannot start is one line, exit 2.
- **stopping**: Ctrl-C (SIGINT) and SIGTERM end the run with one line saying what was
  kept and that the same command resumes (exit 130 and 143), never a traceback. The
  ledger-first discipline of the loop already keeps every result; this only says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from agent.campaign.config import load_config
from agent.campaign.monitor import watching
from agent.campaign.state import FAILURE_STOP
from agent.cli.console import families_text, hits_table, open_view
from agent.core.errors import CampaignStopped, InnloopError
from agent.core.paths import resolve_state_dir
from oracles import prepare_process

__all__ = ["Interrupted", "run_command"]

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):
    """SIGTERM arrived (SIGINT arrives as `KeyboardInterrupt`); like it, not an error to catch."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _console_handlers() -> list[logging.Handler]:
    """Every logging handler that writes to the terminal (Prefect's console handler among them)."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    seen: dict[int, logging.Handler] = {}
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and h.stream in (sys.stderr, sys.stdout, sys.__stderr__):
                seen[id(h)] = h
    return list(seen.values())


@contextmanager
def _signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise in the main thread and silence console logging first.

    Silenced, because the frameworks under the loop (Prefect's crash report, Ray's
    shutdown) log their own tracebacks of the interruption; the person asked to stop and
    gets one line instead. Handlers and levels are restored when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    levels: dict[int, tuple[logging.Handler, int]] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        for h in _console_handlers():
            levels.setdefault(id(h), (h, h.level))
            h.setLevel(logging.CRITICAL + 1)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(signum)

    previous = {s: signal.signal(s, on_signal) for s in EXIT_SIGNAL}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for h, level in levels.values():
            h.setLevel(level)


def quiet_frameworks(verbose: bool) -> None:
    """Prefect's console handler at WARNING (its API handler still gets every record) unless ``-v``."""
    level = "INFO" if verbose else "WARNING"
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no telemetry notice printed into the view
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = level  # read when Prefect configures logging
    if "prefect" in sys.modules:  # configured already (an earlier run in this process): set it directly
        from prefect.logging.handlers import PrefectConsoleHandler  # loaded already, as the test above says

        for lg in [logging.getLogger(), *map(logging.getLogger, ("prefect", "uvicorn", "fastapi"))]:
            for h in lg.handlers:
                if isinstance(h, PrefectConsoleHandler):
                    h.setLevel(level)


def _view_mode(args: argparse.Namespace) -> str:
    if args.quiet:
        return "quiet"
    if args.verbose or not sys.stdout.isatty():
        return "lines"  # log records and redraws do not mix: -v gets plain lines
    return "live"


def run_command(args: argparse.Namespace) -> int:
    """Run ``args`` (the ``run`` subcommand's namespace); return the exit status."""
    t0 = time.perf_counter()
    if args.iterations is not None and args.iterations < 1:
        raise InnloopError(f"--iterations must be at least 1, got {args.iterations}")
    cfg = load_config(args.config)  # validate before anything starts (Prefect, Ray)
    prepare_process(cfg.oracle.name)  # before Ray loads what the oracle must choose first
    state_dir = str(resolve_state_dir(args.state))  # resolved once, here: jobs get absolute paths
    material = cfg.design_material()
    quiet_frameworks(args.verbose)
    try:
        with _signals(), open_view(_view_mode(args), unit=material.target_unit) as view, watching(view):
            reason, seconds, stopped = _campaign(args, cfg, state_dir, view)
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(_kept(state_dir, cfg.name, signum, args), file=sys.stderr, flush=True)
        return EXIT_SIGNAL[signal.Signals(signum)]
    seconds["total"] = time.perf_counter() - t0
    return _finish(state_dir, cfg.name, reason, seconds, material, stopped)


def _campaign(args: argparse.Namespace, cfg: Any, state_dir: str, view: Any) -> tuple[str, dict[str, float], bool]:
    """Run the campaign (through Prefect unless ``--no-prefect``); ``(why it stopped, seconds per phase,
    whether it was stopped for a person: `CampaignStopped`)``."""
    # the loop's stack (torch) loads here, inside the run's own clock
    from agent.campaign.runner import run_campaign
    from flows.samplers import make_sampler

    use_ray = not args.no_ray and cfg.ray.enabled
    if args.no_prefect:
        if use_ray:
            view.set_phase("starting Ray")
        sampler = make_sampler(cfg.ray, args.ray_address, use_ray=use_ray)
        text = Path(args.config).read_text() if args.config else None
        t = time.perf_counter()
        try:
            run = run_campaign(cfg, state_dir, source_text=text, sampler=sampler, max_iterations=args.iterations)
        finally:
            sampler.close()
        return run.reason, {"campaign": time.perf_counter() - t}, False
    from flows.server import ensure_api  # Prefect only when the flow runs

    view.set_phase("starting Prefect")
    t = time.perf_counter()
    ensure_api()
    seconds = {"prefect": time.perf_counter() - t}
    from flows.campaign import campaign_flow  # Prefect only when the flow runs

    try:
        out = campaign_flow(
            config=str(Path(args.config).absolute()) if args.config else None,
            state_dir=state_dir,
            ray_address=args.ray_address,
            use_ray=use_ray,
            max_iterations=args.iterations,
        )
        return str(out["reason"]), seconds | {k: float(v) for k, v in out.get("seconds", {}).items()}, False
    except CampaignStopped as exc:
        return str(exc).removeprefix(f"{cfg.name}: "), seconds, True


def _finish(
    state_dir: str, name: str, reason: str, seconds: dict[str, float], material: Any, stopped: bool = False
) -> int:
    """The final table: why it stopped, oracle calls, hits (and the families holding them) per target
    with units, time per phase."""
    from agent.campaign.runner import campaign_status  # loaded by the run already; a late import costs nothing

    status = campaign_status(state_dir, name)
    console = Console(soft_wrap=False) if sys.stdout.isatty() else Console(width=160, soft_wrap=False)
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total")
    unit = f" {material.target_unit}" if material.target_unit else ""
    hits = ", ".join(
        f"{t['hits']}/{t['wanted']} at {t['short']}{unit}" + (f" in {fams}" if (fams := _families(t)) else "")
        for t in status["targets"]
    )
    console.print(
        f"{name}: {reason}; {status['oracle_calls']} oracle calls in {status['iterations']} iterations, "
        f"diverse hits {hits}"
        + (f" ({status['infeasible']} measurements infeasible)" if status["constraints"] else "")
        + f"; {seconds['total']:.0f} s"
        + (f" ({phases})" if phases else ""),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    console.print(hits_table(status, material.space.units, material.target, material.target_unit))
    return 3 if stopped or reason.startswith(FAILURE_STOP) else 0  # 3: stopped for a person, as without Prefect


def _families(t: dict[str, Any]) -> str:
    """A target's families holding a hit, as `families_text` says them (``''``: none to speak of)."""
    return families_text(t.get("families"), t.get("families_total"), t.get("families_wanted"))


def _kept(state_dir: str, name: str, signum: int, args: argparse.Namespace) -> str:
    """One line: what the stopped run kept, and the command that resumes it."""
    from agent.campaign.runner import campaign_status  # the loop's stack: as in `_campaign`

    what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    again = "innloop " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])
    try:
        s = campaign_status(state_dir, name)
    except InnloopError:
        return f"innloop: stopped by {what} before campaign {name} began; nothing to keep. `{again}` starts it"
    last = s["iterations"] - 1
    done = f"iterations 0-{last} committed" if last >= 0 else "no iteration committed yet"
    return (
        f"innloop: stopped by {what}; kept {s['oracle_calls']} results in the ledger ({done}) and "
        f"{s['in_flight']} jobs in flight under {s['state']}; `{again}` resumes where it stopped"
    )
