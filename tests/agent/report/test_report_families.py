"""The report's families: per target, how its diverse hits spread over the regions its models believe in.

A toy set whose families are known (three tight clusters in a 2-D box) pins the table's
counts and centres exactly; the mock campaign's report is checked against the families
its metrics stored, read back from disk and assigned independently; and a campaign that
never trained a model says plainly that it has no families.
"""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.core.space import DesignSpace
from agent.design.coverage import Families, find_families
from agent.report.families import (
    FAMILY_COLUMNS,
    TargetFamilies,
    families_summary,
    families_table,
    families_text,
    hit_families,
)
from agent.report.inputs import Target

MODELS_PHRASE = (
    "(k-means of designs predicted in range; no true solution set is known to the campaign, so these are the "
    "models' regions)"
)


def _text(html: str) -> str:
    """The page's text without its embedded images (base64 may spell anything)."""
    return unescape(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html))


def _toy() -> tuple[DesignSpace, Target, TargetFamilies]:
    """Three clusters of 50, 30 and 20 believed designs in a box x ∈ [0, 10], y ∈ [-1, 1];
    hits: 1 near the first, 4 near the second, none near the third."""
    rng = np.random.default_rng(0)
    at = np.array([[0.2, 0.2], [0.8, 0.3], [0.5, 0.9]])
    believed = np.vstack([c + 0.01 * rng.standard_normal((n, 2)) for c, n in zip(at, (50, 30, 20))])
    fam = find_families(rng.permutation(believed), 3, seed=0)
    hits = np.vstack([at[0] + 0.02, at[1] + [[0.03, 0], [-0.03, 0], [0, 0.03], [0, -0.03]]])
    space = DesignSpace.box("toy", [("x", 0.0, 10.0, ""), ("y", -1.0, 1.0, "")])
    return space, Target.around(1.0, 0.1, "eV"), TargetFamilies(fam, hits)


def test_toy_families_are_counted_exactly() -> None:
    space, target, found = _toy()
    assert found.families is not None
    index = found.families.assign(np.array([[0.2, 0.2], [0.8, 0.3], [0.5, 0.9]]))  # k-means' own numbering
    assert sorted(index.tolist()) == [0, 1, 2]
    table = families_table([target], [found], space)
    assert list(table.columns) == [*FAMILY_COLUMNS, "x", "y"]
    assert table["family"].tolist() == index.tolist()  # the campaign's numbers, the largest family first
    assert table["believed"].tolist() == [50, 30, 20]
    assert table["hits"].tolist() == [1, 4, 0]
    assert (table["target"] == 1.0).all()
    # centres in physical units, rounded to a thousandth of each range
    np.testing.assert_allclose(table["x"], [2.0, 8.0, 5.0], atol=0.02)
    np.testing.assert_allclose(table["y"], [-0.6, -0.4, 0.8], atol=0.005)
    assert (table["x"] == table["x"].round(2)).all() and (table["y"] == table["y"].round(3)).all()
    assert [f.tolist() for f in hit_families([found])] == [[index[0]] + [index[1]] * 4]
    summary = families_summary([target], [found])
    per_family = np.zeros(3, int)
    per_family[index] = [1, 4, 0]
    assert summary == [
        {"target": "1 eV", "hits": 5, "families": 3, "covered": 2, "hits_per_family": per_family.tolist()}
    ]
    text = families_text(summary, 3, pool=False)
    assert "models of iteration 3" in text[0]
    assert text[1] == f"5 diverse hits in 2 of 3 families the campaign's models believe reach 1 eV {MODELS_PHRASE}."


def test_a_target_without_families_says_why() -> None:
    space, target, _ = _toy()
    none = TargetFamilies(None, np.zeros((1, 2)), "it asks for families = 1, so its hits are not split into families")
    table = families_table([target], [none], space)
    assert table.empty and list(table.columns) == [*FAMILY_COLUMNS, "x", "y"]
    summary = families_summary([target], [none])
    assert summary[0]["families"] is None and summary[0]["covered"] is None
    text = families_text(summary, None, pool=True)
    assert "pool rows" in text[0]
    assert text[1] == (
        "No families for 1 eV (1 diverse hit): it asks for families = 1, so its hits are not split into families."
    )
    assert hit_families([none])[0].tolist() == [-1]


def _stored_families(root: Path) -> list[dict[str, Any] | None]:
    """The families of the last iteration that stored any, read from its metrics.json."""
    for metrics in sorted((root / "iterations").glob("*/metrics.json"), reverse=True):
        stored = json.loads(metrics.read_text()).get("families")
        if stored:
            return list(stored)
    raise AssertionError(f"no iteration of {root} stored families")


@pytest.mark.slow
def test_mock_report_counts_hits_per_stored_family(mock_report: Any) -> None:
    from agent.campaign.config import config_from_dict
    from agent.campaign.runner import open_campaign
    from agent.campaign.state import diverse_hits, ledger_arrays
    from agent.campaign.store import CampaignStore

    r = mock_report.result
    raw, _ = CampaignStore(mock_report.state, mock_report.name).load_config()
    cfg = config_from_dict(raw)
    _, state = open_campaign(cfg, mock_report.state)
    U, y = ledger_arrays(state)
    stored = _stored_families(mock_report.state / mock_report.name)
    table = pd.read_csv(r.folder / "families.csv")
    space = cfg.design_material().space
    assert list(table.columns) == [*FAMILY_COLUMNS, *space.names]
    html = _text(r.html.read_text())
    assert 'id="table-families"' in html and "families.csv" in html
    keys = sorted(table["target"].unique())
    assert keys == [0.5, 1.0]
    for spec, data, key, s in zip(cfg.targets, stored, keys, r.summary["families"]):
        assert data is not None
        fam = Families.from_dict(data)
        hits = U[diverse_hits(U, y, spec.range, cfg.loop.min_distance)]
        load = np.bincount(fam.assign(hits), minlength=fam.k)
        rows = table[table["target"] == key]
        assert sorted(rows["family"]) == list(range(fam.k)) and rows["believed"].is_monotonic_decreasing
        for f, believed, n in zip(rows["family"], rows["believed"], rows["hits"]):
            assert (believed, n) == (fam.sizes[f], load[f]), f
        assert rows["hits"].sum() == len(hits) == s["hits"]
        covered = int((load > 0).sum())
        assert (s["families"], s["covered"]) == (fam.k, covered)
        label = f"{key:g} eV"
        n = len(hits)
        assert f"{n} diverse hit{'s' if n != 1 else ''} in {covered} of {fam.k} families" in html
        assert f"believe reach {label} {MODELS_PHRASE}" in html
    # the diversity table marks each hit with the same family numbers
    diversity = pd.read_csv(r.folder / "diversity.csv")
    marked = diversity[diversity["set"] == "campaign hit"]
    for key in keys:
        counts = marked.loc[marked["target"] == key, "family"].value_counts()
        rows = table[table["target"] == key]
        assert {int(f): int(n) for f, n in counts.items()} == {
            int(f): int(n) for f, n in zip(rows["family"], rows["hits"]) if n
        }


UNTRAINED = """
name = "rep-untrained"
seed = 2
[[targets]]
value = 0.5
window = 0.1
hits = 5
[[targets]]
value = 1.0
window = 0.1
hits = 5
families = 2
[initial]
random = 6
[budget]
iterations = 1
[ray]
enabled = false
[retry]
max_attempts = 1
poll_interval_s = 0.01
[oracle]
name = "mock"
"""


@pytest.mark.slow
def test_a_campaign_without_models_says_it_has_no_families(tmp_path: Path) -> None:
    from agent.campaign.config import load_config
    from agent.campaign.runner import run_campaign
    from agent.report import ReportOptions, build_report

    path = tmp_path / "campaign.toml"
    path.write_text(UNTRAINED)
    cfg = load_config(str(path))
    run_campaign(cfg, tmp_path / "state", source_text=UNTRAINED)
    r = build_report(tmp_path / "state", cfg.name, ReportOptions(samples=50, umap_points=200))
    assert pd.read_csv(r.folder / "families.csv").empty
    assert r.summary["families_iteration"] is None
    assert [s["families"] for s in r.summary["families"]] == [None, None]
    html = _text(r.html.read_text())
    why = "the campaign has no trained models yet, so they believe nothing about where its hits lie."
    assert html.count(why) == 2
    assert "No families for 0.5 eV" in html and "No families for 1 eV" in html
