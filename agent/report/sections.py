"""The report's words: section titles, captions and which table goes with which figure.

Captions say how each number was obtained (what the random baseline replays, which
models made the candidates, what "verified", "evidence" and "confirmed" mean), so a reader can
judge a figure without the code. The diversity section says per target how its hits spread
over the families its models believe reach it, and that these are the models' regions, since
no campaign knows the true solution set (`agent.report.families`). A section the campaign's
designs cannot have (strains and structures of a design space that is not a crystal,
switching without two two-sided targets) keeps its place and says in one line why it is
empty, so no reader wonders whether it was forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from agent.campaign.config import CampaignConfig
from agent.report.families import families_text
from agent.report.feasibility import limits_text
from agent.report.html import Figure, Section, Table
from agent.report.inputs import ReportInputs, ReportTargets, Target, crystal_gaps
from agent.report.switch import ConfirmStats

__all__ = ["SWITCHING_COLUMNS", "sections"]

SWITCHING_COLUMNS = [
    "rank",
    "distance",
    "change",
    "pred_0",
    "prob_0",
    "pred_1",
    "prob_1",
    "verified",
    "measured_0",
    "measured_1",
    "evidence_0",
    "evidence_1",
    "confirmed",
    "note",
]


def _switch_text(
    targets: tuple[Target, Target], summary: dict[str, Any], stats: ConfirmStats, oracle: str
) -> list[str]:
    a, b = targets
    u = f" {a.unit}" if a.unit else ""
    in_window = summary.get("in_window", ["-", "-"])
    measured = summary.get("measured_candidates", [0, 0])
    verifier = summary.get("verifier", "the last surrogate")
    rule = summary.get("rule", "model mean inside the window")
    text = [
        f"Switching pairs {a.label} → {b.label}: a design in the window ±{a.window:g}{u} of {a.value:g}{u} paired "
        f"with one in the window ±{b.window:g}{u} of {b.value:g}{u}, the closest first (each design used once; "
        f"distance: {summary.get('metric', 'unit-box Euclidean')}; 0.025 is 1 % strain or 0.05 V/Å). The change "
        "is written in physical units, largest components first.",
        f"Candidates are the campaign's proposals for each target plus every design the campaign measured inside "
        f"the window ({measured[0]} at {a.label}, {measured[1]} at {b.label}); a proposal the campaign measured "
        f"outside its window is dropped. A measured design counts by its measurement; any other is verified by "
        f"{verifier}: {rule}"
        + (
            " (√½ per end, so both ends hold together with at least even odds if independent)"
            if summary.get("min_probability") is not None and abs(summary["min_probability"] - 0.5**0.5) < 1e-9
            else ""
        )
        + f". Verified candidates: {in_window[0]} at {a.label}, {in_window[1]} at {b.label}; "
        f"{summary.get('pairs', 0)} pairs listed, {summary.get('verified', 0)} verified. pred_* and prob_* are the "
        "verifying model's mean and its probability of the window; evidence_* says what backs each end: "
        "measured (by the campaign), confirmed or refuted (measured for this report), predicted (the model only).",
    ]
    ends, free, sent = 2 * summary.get("pairs", 0), summary.get("ends_measured", 0), summary.get("ends_sent", 0)
    by_campaign = summary.get("confirmed_by_campaign", 0)
    if stats.error:
        text.append(f"Oracle confirmation was asked for but not possible: {stats.error}.")
    elif stats.requested:
        top = summary.get("confirm_attempted", 0)
        text.append(
            f"Oracle '{oracle}': {summary.get('confirmed', 0)} of the top {top} pairs confirmed (both values inside "
            f"their windows). Of the {ends} pair ends listed, {free} were measured by the campaign and need no oracle "
            f"call; {sent} ends of the top pairs were sent for this report: {stats.reused} reused from the report's "
            f"own ledger, {stats.reattached} re-attached, {stats.submitted} submitted now. They "
            "are kept in confirm/ledger.jsonl and never enter the campaign's ledger."
        )
    else:
        text.append(
            f"No oracle confirmation: it is on by default for the free table oracle only; for '{oracle}' ask "
            f"with --confirm N. Of the {ends} pair ends listed, {free} were measured by the campaign; {by_campaign} "
            "pairs have both ends measured inside their windows and are confirmed by those measurements."
        )
    return text


def _skipped(title: str, why: str) -> Section:
    return Section(title, [f"Not shown: {why}."])


def sections(
    inputs: ReportInputs,
    plan: ReportTargets,
    stats: ConfirmStats,
    summary: dict[str, Any],
    t: dict[str, pd.DataFrame],
    pngs: dict[str, bytes],
) -> tuple[str, list[str], list[Section]]:
    """Title, introduction and the six sections of the report."""
    cfg, mat, st = inputs.config, inputs.material, inputs.state
    name, gaps = mat.target, crystal_gaps(mat)
    source = (
        f"every pool row of the '{cfg.oracle.name}' oracle that the surrogate puts in a target's window"
        if inputs.pool_oracle
        else "generator samples localized on the surrogate and kept inside each window"
    )
    made = (
        f"Candidates: {source}, from the models of iteration {inputs.models_iteration}."
        if inputs.models_iteration is not None
        else "The campaign has no trained models yet, so there are no candidates."
    )
    title = f"innloop report: {cfg.name}"
    kind = "Material" if not gaps.structures else "Design space"
    prop = f"{name} ({mat.target_unit})" if mat.target_unit else name
    intro = [
        f"{kind} {mat.name}, target property {prop}; oracle '{cfg.oracle.name}'; "
        f"{st.iteration} iterations, {st.calls} oracle calls. Targets: "
        + ", ".join(x.range.label() for x in cfg.targets)
        + ".",
        made,
        *inputs.notes,
    ]

    def fig(key: str, caption: str) -> Figure:
        return Figure(key, caption, pngs[key])

    shared = "; one embedding shared with section 4" if plan.switch is not None else ""
    measured = (
        "bundled data and the campaign's measurements" if inputs.data is not None else "the campaign's measurements"
    )
    data = Section(
        "1. The data",
        items=[
            fig("data_distribution", f"Distribution of {name}: {measured}."),
            Table("target_distribution", "Histogram behind the figure (shared bins).", t["target_distribution"], 10),
            fig(
                "data_umap",
                f"UMAP of the design space ({summary['umap_basis']} sample of {len(t['umap_data'])}), "
                f"coloured by {name}{shared}.",
            ),
            Table("umap_data", "Embedded designs.", t["umap_data"], 5),
        ],
    )
    candidates = Table("candidates", "The candidates per target.", t["candidates"], 5)
    spread = families_text(summary["families"], summary["families_iteration"], inputs.pool_oracle)
    families = Table(
        "families",
        "Families per target, the most believed first: believed designs, diverse hits, centre.",
        t["families"],
        60,
    )
    if gaps.strain:
        diversity = Section(
            "2. Diversity", [made, f"No strain diversity figure: {gaps.strain}.", *spread], [families, candidates]
        )
        rules = _skipped("3. Design rules", f"the design rules are strain statistics and {gaps.strain}")
    else:
        diversity = Section(
            "2. Diversity",
            [made, *spread],
            [
                fig(
                    "diversity",
                    "Average in-plane (a, b, γ) against out-of-plane (c, α, β) strain per target: bundled data "
                    "inside the window, the candidates and the campaign's measured hits (coloured by family once the "
                    "models have families).",
                ),
                families,
                Table("diversity", "One row per design (family: a hit's family).", t["diversity"], 8),
                candidates,
            ],
        )
        rules = Section(
            "3. Design rules",
            [
                "Average normal (tension > 0, compression < 0) and shear strain of the candidates per target, and "
                "the averages of their absolute values (how strained a cell is, whatever the sign)."
            ],
            [
                fig("design_rules", "Distributions per target (density)."),
                Table("design_rules_quantiles", "Quantiles (%) per target.", t["design_rules_quantiles"], 40),
                Table("design_rules", "One row per candidate.", t["design_rules"], 5),
            ],
        )
    if cfg.constraints:
        rules = _with_limits(rules, cfg, t, strain=not gaps.strain)
    if plan.switch is None:
        switching = _skipped("4. Switching pairs", plan.skipped)
    else:
        sw = t["switching_pairs"]
        shown = sw[[c for c in SWITCHING_COLUMNS if c in sw.columns]]
        pair = (plan.targets[plan.switch[0]], plan.targets[plan.switch[1]])
        switching = Section(
            "4. Metal–insulator transitions",
            _switch_text(pair, summary, stats, cfg.oracle.name),
            [
                fig(
                    "switching_umap",
                    "Both candidate sets on the UMAP of section 1, each design placed as UMAP places new points "
                    "(UMAP.transform: near its 15 nearest data designs, the data fixed); black lines join the "
                    "listed pairs.",
                ),
                Table(
                    "switching_pairs", "Ranked switching pairs (full table with both designs in the CSV).", shown, 20
                ),
                Table("umap_switching", "Embedded designs of the switching map.", t["umap_switching"], 5),
            ],
        )
    body = [data, diversity, rules, switching, _campaign(summary, t, fig), _hits(gaps.structures, t)]
    return title, intro, body + ([_dft(summary["dft"], t["dft_evidence"])] if "dft" in summary else [])


def _dft(cost: dict[str, Any], evidence: pd.DataFrame) -> Section:
    """Section 7: what the DFT cost and every hit's gap re-read from its job (`agent.report.dft`)."""
    return Section(
        "7. DFT evidence",
        [
            f"{cost['calls']} oracle calls, {cost['jobs']} of them DFT jobs: {cost['dft_hours']:.2f} DFT hours "
            f"(each job's own seconds, failed jobs included), {cost['wall_hours']:.2f} hours of campaign wall time.",
            f"Every hit's gap re-read from its job's eigenvalues (eigenvalues.json beside the GPAW log) with the "
            f"job's own rule: {cost['hits_agree']} of {cost['hits']} agree with the ledger. Each hit's structure "
            "is in section 6; its job folder holds the GPAW log, input and output.",
        ],
        [Table("dft_evidence", "Every diverse hit, re-read from its job folder.", evidence, 200)],
    )


def _with_limits(rules: Section, cfg: CampaignConfig, t: dict[str, pd.DataFrame], *, strain: bool) -> Section:
    """Section 3 with the design rules over measured designs, all in a window and the feasible ones."""
    q = t["design_rules_limits_quantiles"]
    return Section(
        rules.title,
        [*rules.text, *limits_text(cfg.constraints, q, strain)],
        [
            *rules.items,
            Table(
                "design_rules_limits_quantiles",
                "Quantiles per target and set: all measurements in the window, and the feasible ones.",
                q,
                80,
            ),
            Table("design_rules_limits", "One row per measurement and set.", t["design_rules_limits"], 5),
        ],
    )


def _campaign(summary: dict[str, Any], t: dict[str, pd.DataFrame], fig: Callable[[str, str], Figure]) -> Section:
    return Section(
        "5. The campaign",
        [
            f"Random screening (dashed) is the expected number of diverse hits of uniform random designs, estimated "
            f"by {summary['random_basis']} in 16 random orders and counting hits as the campaign does.",
            "The surrogate error is that of each batch's forecast, made before the batch was measured; the "
            "calibration compares the forecast's central intervals mean ± zσ with the measurements.",
        ],
        [
            fig("campaign_hits", "Diverse hits per target against oracle calls, with random screening."),
            Table("campaign_hits", "The curves, one row per call and target.", t["campaign_hits"], 6),
            fig("campaign_error", "Forecast error of each batch (MAE) and its ±2σ coverage (dotted: 95.4 %)."),
            Table("campaign_batch_error", "Per iteration.", t["campaign_batch_error"], 30),
            fig("campaign_calibration", "Calibration of the ensemble's σ on every measured forecast."),
            Table("campaign_calibration", "Nominal level against observed share.", t["campaign_calibration"], 12),
            Table("campaign_calibration_points", "Forecasts and measurements.", t["campaign_calibration_points"], 5),
            fig("campaign_failures", "Oracle failures by kind."),
            Table("campaign_failures", "Failures by status and error class.", t["campaign_failures"], 12),
            Table(
                "campaign_people",
                "People in the loop: each batch's approval, and measurements told from outside (no oracle calls).",
                t["campaign_people"],
                30,
            ),
            fig("campaign_stages", "Seconds per stage and iteration."),
            Table("campaign_stages", "Seconds per stage.", t["campaign_stages"], 14),
        ],
    )


def _hits(no_structures: str, t: dict[str, pd.DataFrame]) -> Section:
    """Section 6: the best hits as structure files, or as a table of real values without files."""
    if no_structures:
        return Section(
            "6. Best hits",
            [
                "The best measured hits per target (closest to a target value first; inside a range, in the order "
                f"measured), in the parameters' real values. No structure files: {no_structures}."
            ],
            [Table("best_hits", "Best hits per target.", t["best_hits"], 60)],
        )
    return Section(
        "6. Candidates as structures",
        [
            "The best measured hits per target (closest to the target first), written by pymatgen as CIF and POSCAR "
            "(.vasp) files in structures/; the applied field is in each file's comment."
        ],
        [Table("structures", "Exported structures.", t["structures"], 60)],
    )
