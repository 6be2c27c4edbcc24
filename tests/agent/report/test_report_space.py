"""The report of a campaign on a design space declared in its file: a recipe, not a crystal.

Mixed parameters (a category, an integer, two continuous ones), a one-sided target and a
property in % measured by the table oracle from a CSV written here. The report must show
real values (category names, whole numbers), never the models' one-hot relaxation; say in
one line why the strain, switching and structure sections are empty; and name the
property's own unit, never eV.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.core.targets import TargetRange
from agent.report import SIZES
from agent.report.export import best_hits
from agent.report.inputs import Target

pytestmark = pytest.mark.slow

CATALYSTS = ("Pd", "Pt", "Ni")

CAMPAIGN = """
name = "rep-space"
seed = 1
[[targets]]
low = 75.0
hits = 30
[[targets]]
value = 40.0
window = 5.0
hits = 30
[space]
name = "recipe"
[space.property]
name = "yield_pct"
unit = "%"
floor = 0
ceiling = 100
[[space.parameters]]
name = "catalyst"
type = "categorical"
values = ["Pd", "Pt", "Ni"]
[[space.parameters]]
name = "steps"
type = "integer"
lower = 1
upper = 5
[[space.parameters]]
name = "temperature"
lower = 20
upper = 120
unit = "°C"
[[space.parameters]]
name = "time"
lower = 0.5
upper = 10
unit = "h"
[oracle]
name = "table"
[oracle.settings]
path = "recipes.csv"
[initial]
random = 16
[loop]
batch_size = 6
[budget]
iterations = 3
[models]
members = 3
surrogate_epochs = 30
surrogate_warm_epochs = 10
[ray]
enabled = false
[retry]
max_attempts = 1
poll_interval_s = 0.01
"""


def recipes(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A smooth yield (%) over the recipe, every catalyst and step count present."""
    rng = np.random.default_rng(seed)
    cat = rng.choice(CATALYSTS, n)
    steps = rng.integers(1, 6, n)
    temp, hours = rng.uniform(20, 120, n), rng.uniform(0.5, 10, n)
    raw = 30 * (cat == "Pd") + 12 * (cat == "Pt") + 6 * steps + 0.35 * temp + 2.5 * hours
    return pd.DataFrame(
        {"catalyst": cat, "steps": steps, "temperature": temp, "time": hours, "yield_pct": 100 * raw / raw.max()}
    )


@dataclass
class SpaceReport:
    state: Path
    name: str
    result: Any  # agent.report.ReportResult


@pytest.fixture(scope="module")
def space_report(tmp_path_factory: pytest.TempPathFactory) -> SpaceReport:
    from agent.campaign.config import load_config
    from agent.campaign.runner import run_campaign
    from agent.report import ReportOptions, build_report

    root = tmp_path_factory.mktemp("report-space")
    recipes().to_csv(root / "recipes.csv", index=False)
    path = root / "campaign.toml"
    path.write_text(CAMPAIGN)
    cfg = load_config(str(path))
    assert cfg.material is None and cfg.design_material().build is None
    run_campaign(cfg, root / "state", source_text=CAMPAIGN)
    result = build_report(root / "state", cfg.name, ReportOptions(samples=200, umap_points=300))
    return SpaceReport(root / "state", cfg.name, result)


def _text(html: str) -> str:
    """The page's text without its embedded images (base64 may spell anything)."""
    return unescape(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html))


def _real_values(frame: pd.DataFrame) -> None:
    """Design columns as people read them: category names and whole step counts."""
    assert "catalyst_Pd" not in frame.columns and "catalyst" in frame.columns
    assert set(frame["catalyst"]) <= set(CATALYSTS)
    assert (frame["steps"] == frame["steps"].round()).all() and frame["steps"].between(1, 5).all()


def test_space_report_shows_real_values_and_the_property_unit(space_report: SpaceReport) -> None:
    r = space_report.result
    html = _text(r.html.read_text())
    assert "eV" not in html and "Distribution of yield_pct: the campaign's measurements." in html
    assert "yield_pct (%)" in html and "≥ 75, 40 ± 5" in html  # the targets as written
    hits = pd.read_csv(r.folder / "best_hits.csv")
    assert len(hits) and set(hits.columns) == {
        "target",
        "rank",
        "catalyst",
        "steps",
        "temperature",
        "time",
        "yield_pct",
    }
    _real_values(hits)
    assert (hits.loc[hits["target"] == "≥ 75", "yield_pct"] >= 75).all()
    assert ((hits.loc[hits["target"] == "40.0", "yield_pct"] - 40).abs() <= 5 + 1e-9).all()
    assert "Pd" in html and "best_hits.csv" in html
    for name in ("candidates", "umap_data"):
        frame = pd.read_csv(r.folder / f"{name}.csv")
        if len(frame):
            _real_values(frame)
    curves = pd.read_csv(r.folder / "campaign_hits.csv")
    assert set(curves["target"].astype(str)) == {"≥ 75", "40.0"}
    assert len(pd.read_csv(r.folder / "campaign_calibration_points.csv")) > 0  # forecasts found in the ledger


def test_crystal_sections_are_skipped_with_a_reason(space_report: SpaceReport) -> None:
    r = space_report.result
    html = _text(r.html.read_text())
    assert set(r.figures) == set(SIZES) - {"diversity", "design_rules", "switching_umap"}
    assert not r.structures and not (r.folder / "structures").exists()
    for name in ("diversity", "design_rules", "switching_pairs", "structures"):
        assert not (r.folder / f"{name}.csv").exists(), name
    assert html.count("not crystals (it has no structure builder)") == 4  # strain, rules, switching, structures
    assert "Not shown: the design rules are strain statistics" in html and "4. Switching pairs" in html
    s = r.summary
    assert s["switching"].startswith("skipped: ") and s["pairs"] == 0 and all(math.isnan(v) for v in s["targets"])
    assert r.switching.empty


def test_progress_markdown_of_a_space_campaign(space_report: SpaceReport) -> None:
    from agent.campaign.config import config_from_dict
    from agent.campaign.runner import open_campaign
    from agent.campaign.store import CampaignStore
    from flows.report import progress_markdown

    raw, _ = CampaignStore(space_report.state, space_report.name).load_config()
    _, state = open_campaign(config_from_dict(raw), space_report.state)
    text = progress_markdown(state)
    assert "batch MAE (%)" in text and "| ≥ 75 | - |" in text and "eV" not in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ≥ 75 | ") and ln.count("|") == 7]
    assert rows and all(ln.split(" | ")[1] in CATALYSTS for ln in rows)


def test_targets_label_and_order_hits_by_their_range() -> None:
    at = Target.around(1.0, 0.1, "eV")
    assert (at.label, at.key, at.window) == ("1 eV", 1.0, 0.1)
    above = Target(TargetRange(0.8, math.inf), 0.9, "%")
    assert (above.label, above.key, above.window) == ("≥ 0.8 %", "≥ 0.8", None)
    band = Target(TargetRange(0.5, 0.7), 0.6)
    assert band.window == pytest.approx(0.1) and band.label == "0.5–0.7"
    hits = pd.DataFrame({"y": [1.08, 0.99, 1.03]})
    assert best_hits(hits, at, "y", 2)["y"].tolist() == [0.99, 1.03]  # closest to the value first
    assert best_hits(pd.DataFrame({"y": [0.95, 0.81, 2.0]}), above, "y", 3)["y"].tolist() == [0.95, 0.81, 2.0]


def test_cli_report_of_a_space_campaign(
    space_report: SpaceReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli.main import main

    out = tmp_path / "cli"
    args = ["report", space_report.name, "--state", str(space_report.state), "--out", str(out), "--samples", "100"]
    code = main([*args, "-q"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert f"report: {out / 'report.html'}" in text and (out / "best_hits.csv").exists()
