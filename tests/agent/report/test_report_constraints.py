"""The report of a campaign limited on a second property: each hit's limited value, the
design rules with and without the limit, and hit curves that count feasible hits only."""

from __future__ import annotations

import os
from html import unescape
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agent.campaign.runner import campaign_status
from agent.report import ReportOptions, ReportResult, build_report
from tests.agent.constrained import LIMIT, run

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before umap's numba starts its threads
pytestmark = pytest.mark.slow  # a campaign and its report: about 40 s
Built = tuple[ReportResult, dict[str, Any]]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Built:
    state_dir, name = run(tmp_path_factory.mktemp("report-limited"))
    result = build_report(state_dir, name, ReportOptions(samples=300, umap_points=600, confirm=0))
    return result, campaign_status(state_dir, name)


def test_each_hit_shows_its_strain_energy(report: Built) -> None:
    result, status = report
    hits = pd.read_csv(result.tables["structures"])
    assert "strain_energy" in hits.columns and len(hits) >= 1
    assert (hits["strain_energy"] <= LIMIT).all() and hits["gap"].between(0.9, 1.1).all()
    curve = pd.read_csv(result.tables["campaign_hits"])
    assert curve["hits"].iloc[-1] == status["targets"][0]["hits"], "the curve counts what the campaign counts"
    assert result.summary["infeasible"] == status["infeasible"] >= 5


def test_design_rules_with_and_without_the_limit(report: Built) -> None:
    result, _ = report
    q = pd.read_csv(result.tables["design_rules_limits_quantiles"])
    n = q.drop_duplicates("group").set_index("group")["n"]
    (every,) = [g for g in n.index if g.endswith("· all in window")]
    (kept,) = [g for g in n.index if g.endswith("· feasible")]
    assert n[every] > n[kept] >= 1, "the limit removes in-window measurements from the rules"
    assert set(q["feature"]) == {"normal_mean", "shear_mean", "normal_abs_mean", "shear_abs_mean"}
    points = pd.read_csv(result.tables["design_rules_limits"])
    assert (points.loc[points["set"] == "feasible", "strain_energy"] <= LIMIT).all()
    assert (points.loc[points["set"] == "all in window", "strain_energy"].fillna(99) > LIMIT).any()
    html = unescape(Path(result.html).read_text())
    assert "With the campaign's limits (strain_energy ≤ 1.5)" in html
    assert "all measurements in the window, and the feasible ones" in html
