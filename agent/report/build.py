"""``innloop report``: the campaign report, from ``state/<campaign>/`` to ``report/report.html``.

`build_report` reads the campaign (`agent.report.inputs`), computes every table
(`agent.report.tables`, `agent.report.families`, `agent.report.switch`, `agent.insight`),
draws the figures (`agent.report.figures`), writes PNG and CSV files beside one self-contained HTML file
(`agent.report.html`) and returns where everything went with the seconds per stage.
Tables and figures a campaign's designs cannot have (strains, switching pairs and
structure files of a design space that is not a strained crystal; switching without two
two-sided targets) are not computed, and their sections say why (`agent.report.sections`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agent.campaign.constraints import feasible
from agent.campaign.state import feasible_rows, ledger_arrays
from agent.core.atomic import write_bytes, write_json, write_text
from agent.core.errors import ConfigError, StateError
from agent.insight import SwitchingReport
from agent.report import figures, tables
from agent.report.cache import ArrayCache, cache_dir
from agent.report.dft import campaign_dft
from agent.report.export import best_hit_table, clear_scratch, export_structures, write_csv
from agent.report.families import families_summary, families_table, hit_families, report_families
from agent.report.feasibility import hit_frames, rules_with_limits
from agent.report.html import render
from agent.report.inputs import (
    ReportInputs,
    Target,
    candidate_sets,
    crystal_gaps,
    design_frame,
    load_inputs,
    report_targets,
)
from agent.report.sections import sections
from agent.report.switch import ConfirmStats, embedding_tables, switching_pairs

__all__ = ["ReportOptions", "ReportResult", "build_report", "default_confirm"]


@dataclass(frozen=True)
class ReportOptions:
    """What to put in a report. ``confirm=None``: 20 pairs for the free table oracle, else none."""

    out: Path | None = None  # default: state/<campaign>/report
    switch: tuple[float, float] | None = None
    confirm: int | None = None
    samples: int = 1000  # generator samples per target (a pool oracle gives all its in-window rows)
    umap_points: int = 2000  # data rows in the embedding (plus up to half as many per switching set)
    top: int = 20  # switching pairs listed
    best: int = 5  # structures exported per target
    seed: int = 0
    confirm_timeout_s: float | None = None  # per confirmation job; None: the campaign's retry.job_timeout_s
    confirm_wait_s: float | None = 900.0  # all confirmations together; jobs running then are kept for the next report
    cache: Path | None = None  # what does not change between campaigns; default: agent.report.cache.cache_dir

    def __post_init__(self) -> None:
        for key in ("samples", "umap_points", "top", "best"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"report option {key} must be >= 1, got {getattr(self, key)}")
        if self.confirm is not None and self.confirm < 0:
            raise ConfigError(f"report option confirm must be >= 0, got {self.confirm}")
        for key in ("confirm_timeout_s", "confirm_wait_s"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"report option {key} must be a positive number of seconds, got {value}")


@dataclass
class ReportResult:
    folder: Path
    html: Path
    figures: dict[str, Path]
    tables: dict[str, Path]
    structures: list[Path]
    switching: pd.DataFrame
    summary: dict[str, Any]
    confirm: ConfirmStats
    seconds: dict[str, float] = field(default_factory=dict)


def default_confirm(oracle_name: str) -> int:
    """Pairs confirmed when not asked: the table oracle answers for free, any other costs."""
    return 20 if oracle_name == "table" else 0


def _no_switching(why: str) -> tuple[SwitchingReport, ConfirmStats]:
    """The switching results of a report that has none: no pairs, and why (``switching``)."""
    columns = ["rank", "distance", "change", "verified", "confirmed", "note"]
    summary: dict[str, Any] = {"switching": f"skipped: {why}", "targets": [math.nan, math.nan], "pairs": 0}
    summary |= {"verified": 0, "confirm_attempted": 0, "confirmed": 0, "confirmed_by_campaign": 0}
    return SwitchingReport(pd.DataFrame(columns=columns), summary), ConfirmStats()


def _random_basis(inputs: ReportInputs) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, str]:
    """Designs drawn uniformly with their values, and which of them meet the campaign's limits
    (``None``: no limits); the bundled data serve only when they carry every limited value."""
    limits = inputs.config.constraints
    data = inputs.data
    if data is not None and all(c.property in data.frame.columns for c in limits):
        ok = feasible(data.frame[[c.property for c in limits]].to_numpy(dtype=np.float64), limits) if limits else None
        return data.U, data.y, ok, "replaying the bundled data (drawn uniformly over the design box)"
    U, y = ledger_arrays(inputs.state)
    keep = np.array([r.tag.startswith("seed") for r in inputs.state.records], dtype=bool)
    if not keep.any():
        return None, None, None, "no uniform random designs to estimate it from"
    ok = feasible_rows(inputs.state)[keep] if limits else None
    return U[keep], y[keep], ok, "replaying the campaign's own uniform random seed designs"


def _batches(inputs: ReportInputs) -> list[tuple[int, pd.DataFrame]]:
    out = []
    for i in range(inputs.state.iteration):
        try:
            out.append((i, pd.read_csv(inputs.store.iteration_file(i, "batch.csv"))))
        except StateError:
            continue  # an iteration without a batch (nothing left to measure)
    return out


@contextlib.contextmanager
def _torch_threads() -> Iterator[None]:
    """Torch with ``$INNLOOP_TORCH_THREADS`` threads (default 1), as the campaign runs it, then as before.

    Why: the models are small, and on a busy two-core machine torch's default (one thread
    per core) made the GP fit of the verifier 20 times slower (73 s instead of 3 s).
    """
    import torch  # the report's models loaded it already; named here, not at the top, for this use only

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(os.environ.get("INNLOOP_TORCH_THREADS", "1"))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_report(
    state_dir: str | Path, name: str, options: ReportOptions | None = None, log: Callable[[str], None] = lambda _m: None
) -> ReportResult:
    """Write the report of campaign ``name``; re-running it reuses the confirmation ledger and the cache."""
    with _torch_threads():
        return _build(state_dir, name, options or ReportOptions(), log)


def _build(state_dir: str | Path, name: str, opt: ReportOptions, log: Callable[[str], None]) -> ReportResult:
    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        seconds[stage] = now - clock[0]
        clock[0] = now

    inputs = load_inputs(state_dir, name)
    folder = Path(opt.out) if opt.out else inputs.store.root / "report"
    folder.mkdir(parents=True, exist_ok=True)
    clear_scratch(folder)
    mat, cfg, space = inputs.material, inputs.config, inputs.material.space
    tname, unit = mat.target, mat.target_unit
    plan = report_targets(inputs, opt.switch)
    targets, n_campaign, pair = plan.targets, plan.campaign, plan.switch
    gaps = crystal_gaps(mat)
    labels = {tg.key: tg.label for tg in targets}
    lap("load")

    sets = candidate_sets(inputs, targets, opt.samples, opt.seed)
    hits = hit_frames(inputs.state, mat, targets)
    limited = [c.property for c in cfg.constraints]
    found, families_at = report_families(inputs.state, inputs.models_iteration)  # the campaign's targets only
    lap("candidates")

    confirm = default_confirm(cfg.oracle.name) if opt.confirm is None else opt.confirm
    ends: tuple[Target, ...] = () if pair is None else (targets[pair[0]], targets[pair[1]])
    end_sets: tuple[pd.DataFrame, ...] = () if pair is None else (sets[pair[0]], sets[pair[1]])
    if pair is not None:
        sw, stats = switching_pairs(
            inputs,
            (targets[pair[0]], targets[pair[1]]),
            (sets[pair[0]], sets[pair[1]]),
            top=opt.top,
            confirm=confirm,
            folder=folder / "confirm",
            timeout_s=opt.confirm_timeout_s,
            wait_s=opt.confirm_wait_s,
        )
    else:
        sw, stats = _no_switching(plan.skipped)
    lap("switching")

    cache = ArrayCache(opt.cache if opt.cache is not None else cache_dir(state_dir))
    emb = embedding_tables(inputs, ends, end_sets, sw.table, max_points=opt.umap_points, seed=opt.seed, cache=cache)
    lap("umap")

    data_frame = design_frame(space, inputs.data.X) if inputs.data is not None else None
    data_y = inputs.data.y if inputs.data is not None else None
    U_l, y_ledger = ledger_arrays(inputs.state)
    t: dict[str, pd.DataFrame] = {
        "target_distribution": tables.distribution_table(data_y, y_ledger),
        "umap_data": emb.data,
        "candidates": pd.concat([s.assign(target=tg.key) for tg, s in zip(targets, sets)], ignore_index=True),
    }
    t["families"] = families_table(targets[:n_campaign], found, space)
    if not gaps.strain:
        t["diversity"] = tables.diversity_table(
            targets[:n_campaign], sets, data_frame, data_y, hits, mat, hit_families(found)
        )
        t["design_rules"], t["design_rules_quantiles"] = tables.design_rule_tables(targets[:n_campaign], sets, mat)
    if pair is not None:
        t["switching_pairs"], t["umap_switching"] = sw.table, emb.switching
    if cfg.constraints:  # the design rules over measured designs, with and without the limits
        t["design_rules_limits"], t["design_rules_limits_quantiles"] = rules_with_limits(
            inputs.state, mat, targets[:n_campaign], not gaps.strain
        )
    rU, ry, rok, basis = _random_basis(inputs)
    camp = targets[:n_campaign]
    t["campaign_hits"] = tables.hits_table(
        U_l,
        y_ledger,
        camp,
        cfg.loop.min_distance,
        rU,
        ry,
        seed=opt.seed,
        feasible=feasible_rows(inputs.state),
        random_feasible=rok,
    )
    t["campaign_batch_error"] = tables.batch_error_table(inputs.state.history)
    points = tables.calibration_points(_batches(inputs), inputs.state.records, space, tname)
    t["campaign_calibration_points"], t["campaign_calibration"] = points, tables.calibration_curve(points)
    t["campaign_failures"] = tables.failure_table(inputs.state.records)
    t["campaign_people"] = tables.people_table(inputs.state.history, inputs.state.records)
    t["campaign_stages"] = tables.stage_table(inputs.state.history)
    dft = campaign_dft(inputs.state, [(tg.label, tg.range) for tg in camp])  # None: no hit ran in a DFT job
    if dft is not None:
        t["dft_evidence"] = dft[0]
    lap("tables")

    structure_files: list[Path] = []
    # a DFT campaign's every hit is evidence: all of them as structures, not only the best
    best = opt.best if dft is None else max([opt.best, *(len(h) for h in hits[:n_campaign])])
    if gaps.structures:
        t["best_hits"] = best_hit_table(mat, camp, hits[:n_campaign], best, limited)
    else:
        t["structures"], structure_files = export_structures(
            mat, camp, hits[:n_campaign], folder / "structures", best, limited
        )
    lap("structures")

    pngs = {
        "data_distribution": figures.draw("data_distribution", t["target_distribution"], tname, unit),
        "data_umap": figures.draw("data_umap", emb.data, f"{emb.basis}: {len(emb.data)} designs", colour=tname),
    }
    if not gaps.strain:
        pngs["diversity"] = figures.draw("diversity", t["diversity"], labels=labels)
        pngs["design_rules"] = figures.draw("design_rules", t["design_rules"], tables.RULE_FEATURES, labels=labels)
    if pair is not None:
        pngs["switching_umap"] = figures.draw(
            "switching_umap",
            emb.switching,
            f"{ends[0].label} and {ends[1].label} candidates; lines: the listed pairs",
            pairs=emb.pair_lines,
        )
    pngs |= {
        "campaign_hits": figures.draw("campaign_hits", t["campaign_hits"], labels=labels),
        "campaign_error": figures.draw("campaign_error", t["campaign_batch_error"], unit=unit),
        "campaign_calibration": figures.draw("campaign_calibration", t["campaign_calibration"]),
        "campaign_failures": figures.draw("campaign_failures", t["campaign_failures"]),
        "campaign_stages": figures.draw("campaign_stages", t["campaign_stages"]),
    }
    lap("figures")

    fig_paths = {k: write_bytes(folder / f"{k}.png", v) for k, v in pngs.items()}
    table_paths = {k: write_csv(folder / f"{k}.csv", v) for k, v in t.items()}
    summary = dict(sw.summary) | {
        "campaign": cfg.name,
        "unit": unit,
        "oracle": cfg.oracle.name,
        "models_iteration": inputs.models_iteration,
        "candidates": [len(s) for s in sets],
        "random_basis": basis,
        "umap_basis": emb.basis,
        "umap_points": emb.points,
        "umap_fitted": emb.fitted,
        "umap_cached": emb.cached,
        "notes": inputs.notes,
        "families": families_summary(targets[:n_campaign], found),
        "families_iteration": families_at,
        "constraints": [c.label() for c in cfg.constraints],
        "infeasible": int((~feasible_rows(inputs.state) & np.isfinite(y_ledger)).sum()),
    }
    if dft is not None:
        summary["dft"] = dft[1]
    title, intro, body = sections(inputs, plan, stats, summary, t, pngs)
    html_path = write_text(folder / "report.html", render(title, intro, body))
    lap("html")
    write_json(folder / "summary.json", summary | {"seconds": seconds, "confirm": stats.__dict__}, indent=2)
    log(f"report of {cfg.name} written to {html_path}")
    return ReportResult(folder, html_path, fig_paths, table_paths, structure_files, sw.table, summary, stats, seconds)


def switching_line(summary: dict[str, Any], arrow: str = "->") -> str:
    """One sentence on the report's switching pairs (or why there are none), for the console
    (``->``) and the flow's artifact (``→``)."""
    if str(summary.get("switching", "")).startswith("skipped"):
        return f"switching pairs {summary['switching']}"
    unit = f" {summary['unit']}" if summary.get("unit") else ""
    a, b = summary["targets"]
    return (
        f"switching {a:g} {arrow} {b:g}{unit}: {summary['pairs']} pairs, {summary['verified']} verified by "
        f"{summary.get('verifier', 'the model')}, {summary['confirmed']} of {summary['confirm_attempted']} "
        "confirmed by the oracle"
    )
