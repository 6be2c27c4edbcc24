"""The ``innloop`` command line.

Every error innloop raises on purpose (`InnloopError`) ends as one line on stderr and
its ``exit_code``: 2 for bad input (config, data, state, a refused request), 3 when a
campaign stopped because its oracle kept failing or stayed unreachable (everything
measured is saved; run it again later). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.cli.doctor import innloop_version
from agent.cli.doctor import main as doctor
from agent.cli.people import add_people_commands
from agent.core.errors import InnloopError
from agent.core.paths import resolve_state_dir

__all__ = ["main"]

# Each command imports what it needs inside its function: torch, pandas and Prefect take
# seconds to load, and `innloop --help` (or a typo) must answer at once.


def _design(args: argparse.Namespace) -> int:
    # torch, the models and the funnel load when a design is asked for, not at start-up
    from agent.core.materials import get_material
    from agent.core.structures import write_structures
    from agent.design.funnel import DESIGN, check_target, design
    from agent.design.localize import LocalizeConfig
    from agent.design.trained import DesignSetup, cached_models, training_data
    from agent.models.surrogate import EnsembleConfig

    cfg = replace(
        DESIGN,
        n_samples=args.n,
        raw=args.no_refine,
        max_sigma=None if args.max_sigma <= 0 else args.max_sigma,
        localize=LocalizeConfig(tol=args.tol, progress=not args.quiet),
    )
    material = get_material(args.material)
    data = training_data(material)
    check_target(args.target, float(data.y.min()), float(data.y.max()), f"{material.name} data")
    setup = DesignSetup(
        material=material.name,
        generator=args.generator,
        state_dir=resolve_state_dir(args.state),
        retrain=args.retrain,
        seed=args.seed,
        progress=not args.quiet,
        surrogate=EnsembleConfig(
            seed=args.seed, **({"epochs": args.surrogate_epochs} if args.surrogate_epochs else {})
        ),
        generator_train={"epochs": args.generator_epochs},
    )
    models = cached_models(setup, data, log=_log(args))
    assert models.generator is not None  # `cached_models` always trains or loads one
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - t0
        return out

    space = material.space
    found = design(space, models.generator, models.surrogate, args.target, cfg, seed=args.seed, stage=timed)
    frame = found.frame(space)
    frame.insert(0, "target", args.target)
    seconds["total"] = sum(seconds.values())
    _log(args)(
        "funnel: "
        + ", ".join(f"{k} {v}" for k, v in found.counts.items())
        + "; seconds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items())
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False, float_format="%.6g")
        _log(args)(f"wrote {len(frame)} candidates to {args.out}")
    else:
        frame.to_csv(sys.stdout, index=False, float_format="%.6g")
    if args.cif:
        best = frame.assign(err=(frame["pred"] - args.target).abs()).nsmallest(args.cif_max, "err")
        structures = [material.builder()(x) for x in space.from_frame(best)]
        paths = write_structures(structures, args.cif)
        _log(args)(f"wrote {len(paths)} structure files for the {len(best)} best candidates to {args.cif}")
    return 0


def _measure(args: argparse.Namespace) -> int:
    # pandas, the job driver and the oracles load when a measurement is asked for, not at start-up
    import pandas as pd

    from agent.campaign.measure import measure, measure_retry
    from agent.core.errors import DataError
    from oracles import make_oracle

    try:
        settings = json.loads(args.settings) if args.settings else {}
    except json.JSONDecodeError as exc:
        raise InnloopError(f"--settings is not valid JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise InnloopError("--settings must be a JSON object, e.g. '{\"latency_s\": 2}'")
    path = Path(args.designs)
    if not path.is_file():
        raise DataError(f"designs file {path} does not exist")
    try:
        designs = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    retry = measure_retry(
        poll_s=args.poll, job_timeout_s=args.job_timeout, outage_s=args.outage, max_attempts=args.max_attempts
    )
    oracle = make_oracle(args.oracle, **settings)
    table = measure(oracle, designs, args.out, retry=retry, timeout_s=args.timeout, log=_log(args))
    return 0 if (table["status"] == "completed").all() else 1


def _run(args: argparse.Namespace) -> int:
    from agent.cli.run import run_command  # the campaign's stack: see the note at the top

    return run_command(args)


def _status(args: argparse.Namespace) -> int:
    from agent.campaign.runner import campaign_status  # the campaign's stack: see the note at the top
    from agent.campaign.transfer import transfer_line  # as above

    status = campaign_status(str(resolve_state_dir(args.state)), args.campaign)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"{status['campaign']} ({status['state']}): {status['iterations']} iterations, "
        f"{status['oracle_calls']} oracle calls, {status['in_flight']} jobs in flight"
        + (f", {status['external']} external measurements" if status["external"] else "")
        + (", done" if status["done"] else "")
    )
    print("results: " + ", ".join(f"{k} {v}" for k, v in sorted(status["results"].items())))
    if asked := status.get("approval"):
        print(
            f"waiting for approval: {asked['designs']} designs of iteration {asked['iteration']} "
            f"(innloop approve {status['campaign']} --show)"
        )
    if status["constraints"]:
        limits = ", ".join(c["label"] for c in status["constraints"])
        print(f"constraints: {limits}; {status['infeasible']} completed measurements infeasible")
    for t in status["targets"]:
        barred = f", {t['infeasible_in_window']} in the window but infeasible" if status["constraints"] else ""
        print(f"target {t['label']}: {t['hits']} of {t['wanted']} diverse hits" + _families_said(t) + barred)
    if line := transfer_line(status.get("transfer")):
        print(line)
    return 0


def _families_said(t: dict[str, Any]) -> str:
    """How many of a target's believed families hold a hit, for `_status` ('' when it has none)."""
    covered, total, wanted = t.get("families"), t.get("families_total"), t.get("families_wanted")
    asked = "" if wanted is None else f" ({wanted} wanted)"
    if covered is None or total is None:  # no model yet, or `families = 1`: hits wherever they are
        return "" if wanted is None or wanted == 1 else f", families not known yet{asked}"
    return f", in {covered} of {total} families{asked}"


def _report(args: argparse.Namespace) -> int:
    import pandas as pd  # the report's stack: see the note at the top

    from agent.report import ReportOptions, build_report, switching_line

    os.environ.setdefault("NUMBA_NUM_THREADS", os.environ.get("INNLOOP_TORCH_THREADS", "1"))
    switch = None
    if args.switch:
        try:
            a, b = (float(v) for v in args.switch.split(","))
        except ValueError:
            raise InnloopError(f"--switch must be two values 'T0,T1' in eV, e.g. 0,1.0; got {args.switch!r}") from None
        switch = (a, b)
    opts = ReportOptions(
        out=Path(args.out).resolve() if args.out else None, switch=switch, confirm=args.confirm, samples=args.samples
    )
    result = build_report(str(resolve_state_dir(args.state)), args.campaign, opts, log=_log(args))
    s = result.summary
    print(f"report: {result.html}")
    print(switching_line(s))
    table = result.switching
    for _, row in table.head(5).iterrows():
        confirmed = row.get("confirmed")
        mark = "" if confirmed is None or confirmed is pd.NA else ("  confirmed" if confirmed else "  not confirmed")
        print(f"  {int(row['rank']):2d}. distance {float(row['distance']):.3f}: {row['change']}{mark}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from agent.campaign.config import load_config  # see the note at the top; Prefect only after the config is good

    load_config(args.config)
    from flows.campaign import serve  # Prefect: seconds to import

    serve(args.name, args.config, str(resolve_state_dir(args.state)) if args.state else None)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    return doctor(as_json=args.json, deep=args.deep)


def _log(args: argparse.Namespace) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if not getattr(args, "quiet", False):
            print(msg, file=sys.stderr)

    return log


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="innloop", description="Closed-loop inverse design of materials.")
    p.add_argument("--version", action="version", version=f"innloop {innloop_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("design", help="generate, down-select and localize designs for a target")
    d.add_argument("--target", type=float, required=True, help="target property value (eV for a gap)")
    d.add_argument("-n", type=int, default=10_000, help="samples drawn from the generator (default 10000)")
    d.add_argument("--out", help="write candidates to this CSV (default: stdout)")
    d.add_argument("--cif", help="also write CIF and POSCAR files of the best candidates to this folder")
    d.add_argument("--cif-max", type=int, default=20, help="how many structures --cif writes (default 20)")
    d.add_argument("--material", default="mos2", help="material from the registry (default mos2)")
    d.add_argument("--generator", default="cinn", help="cinn, inn, mdn or cvae (default cinn)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--tol", type=float, default=0.005, help="localization tolerance (default 0.005)")
    d.add_argument("--max-sigma", type=float, default=0.05, help="drop candidates with σ above this; 0 keeps all")
    d.add_argument("--no-refine", action="store_true", help="raw generator samples, no down-selection")
    d.add_argument("--state", help="state folder for cached models (default $INNLOOP_STATE_DIR or ./state)")
    d.add_argument("--retrain", action="store_true", help="train models again even if cached")
    d.add_argument("--surrogate-epochs", type=int, help="training epochs of the surrogate (default 500)")
    d.add_argument("--generator-epochs", type=int, help="training epochs of the generator (default: its own)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    d.set_defaults(func=_design)

    m = sub.add_parser("measure", help="measure a CSV of designs with an oracle (resumable)")
    m.add_argument("designs", help="CSV with the material's design columns")
    m.add_argument("--oracle", required=True, help="oracle name: mock, table, …")
    m.add_argument(
        "--out", required=True, help="results CSV, written once all are measured; OUT.journal/ keeps results and jobs"
    )
    m.add_argument("--settings", help="oracle settings as JSON, e.g. '{\"latency_s\": 2}'")
    m.add_argument("--poll", type=float, default=1.0, help="seconds between polls (retry.poll_interval_s; default 1)")
    m.add_argument(
        "--timeout",
        type=float,
        help="stop waiting after this many seconds in all (exit 2); the jobs keep running and the same command "
        "re-attaches to them",
    )
    m.add_argument(
        "--job-timeout",
        type=float,
        help="cancel a job still running after this many seconds and record it as timeout, an infrastructure "
        "failure retried up to --max-attempts (retry.job_timeout_s; default: no limit)",
    )
    m.add_argument(
        "--outage",
        type=float,
        default=3600.0,
        help="stop (exit 3, jobs kept) once every call to the oracle has failed this many seconds (retry.outage_s; "
        "default 3600)",
    )
    m.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        help="submissions of a design that fails for infrastructure reasons (retry.max_attempts; default 3)",
    )
    m.add_argument("-q", "--quiet", action="store_true")
    m.set_defaults(func=_measure)

    r = sub.add_parser("run", help="start or continue a campaign (default: MoS2, 0.5 and 1.0 eV, mock oracle)")
    r.add_argument("config", nargs="?", help="campaign TOML (default: the shipped default campaign)")
    r.add_argument("--state", help="state folder (default $INNLOOP_STATE_DIR or ./state)")
    r.add_argument("--ray-address", help="join this Ray cluster instead of starting a local Ray")
    r.add_argument("--no-ray", action="store_true", help="sample in this process, without Ray")
    r.add_argument("--no-prefect", action="store_true", help="run the loop without a Prefect flow")
    r.add_argument(
        "--iterations", type=int, help="stop this run after N iterations (the campaign goes on at the next run)"
    )
    r.add_argument("-q", "--quiet", action="store_true", help="print only the final table")
    r.add_argument("-v", "--verbose", action="store_true", help="plain lines plus Prefect's log records on the console")
    r.set_defaults(func=_run)

    st = sub.add_parser("status", help="where a campaign stands (from state/ only)")
    st.add_argument("campaign", help="campaign name")
    st.add_argument("--state", help="state folder (default $INNLOOP_STATE_DIR or ./state)")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)

    rp = sub.add_parser("report", help="write a campaign's HTML report with figures, tables and structures")
    rp.add_argument("campaign", help="campaign name")
    rp.add_argument("--state", help="state folder (default $INNLOOP_STATE_DIR or ./state)")
    rp.add_argument("--out", help="report folder (default STATE/CAMPAIGN/report)")
    rp.add_argument("--switch", help="switching targets T0,T1 in eV (default 0,1.0 when the data span them)")
    rp.add_argument(
        "--confirm", type=int, help="switching pairs to confirm with the oracle (default: 20 for table, else 0)"
    )
    rp.add_argument("--samples", type=int, default=1000, help="generator samples per target (default 1000)")
    rp.add_argument("-q", "--quiet", action="store_true", help="no log lines")
    rp.set_defaults(func=_report)

    sv = sub.add_parser("serve", help="expose the campaign flow as a Prefect deployment")
    sv.add_argument("config", nargs="?", help="campaign TOML the deployment runs by default")
    sv.add_argument("--name", default="innloop-campaign", help="deployment name")
    sv.add_argument("--state", help="state folder for the runs")
    sv.set_defaults(func=_serve)

    add_people_commands(sub)

    dr = sub.add_parser("doctor", help="check what works on this machine and how to install what is missing")
    dr.add_argument("--json", action="store_true", help="machine-readable output")
    dr.add_argument("--deep", action="store_true", help="also start a temporary Prefect server and a local Ray")
    dr.set_defaults(func=_doctor)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to say which command resumes a stopped run
    try:
        return int(args.func(args))
    except InnloopError as exc:
        print(f"innloop: {'error' if exc.exit_code == 2 else 'stopped'}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # `run` says what it kept itself; the other commands write only finished files
        print(f"innloop: {args.command} stopped by Ctrl-C", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
