"""The acceptance checks of the campaign report on a mock and a table campaign (small, real)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from agent.report import SIZES, ReportOptions, build_report

pytestmark = pytest.mark.slow

COLUMNS = {
    "target_distribution": ["bin_lo", "bin_hi", "data_count", "campaign_count"],
    "umap_data": ["u1", "u2", "gap", "a", "b", "c", "alpha", "beta", "gamma", "efield"],
    "umap_switching": ["u1", "u2", "set", "gap", "a", "efield"],
    "diversity": ["target", "set", "in_plane", "out_of_plane"],
    "design_rules": ["target", "normal_mean", "shear_mean", "normal_abs_mean", "shear_abs_mean"],
    "design_rules_quantiles": ["group", "feature", "n", "q05", "q25", "q50", "q75", "q95"],
    "switching_pairs": [
        *["rank", "distance", "change", "a_0", "efield_1", "pred_0", "pred_1", "prob_0", "prob_1", "verified"],
        *["measured_0", "measured_1", "evidence_0", "evidence_1", "confirmed"],
    ],
    "campaign_hits": ["calls", "target", "hits", "random_expected"],
    "campaign_batch_error": ["iteration", "oracle_calls", "batch_mae", "batch_coverage_2sigma"],
    "campaign_calibration": ["level", "observed", "n"],
    "campaign_calibration_points": ["iteration", "pred", "pred_std", "measured", "z"],
    "campaign_failures": ["status", "error_class", "count", "example"],
    "campaign_stages": ["iteration", "stage", "seconds"],
    "structures": ["target", "rank", "a", "gap", "cif", "poscar"],
    "candidates": ["a", "efield", "pred", "pred_std", "source", "target"],
}


def _check_report(built: Any) -> None:
    r = built.result
    html = r.html.read_text()
    assert r.html.parent == built.state / built.name / "report"
    assert set(r.figures) == set(SIZES)
    for name, (w, h) in SIZES.items():
        path = r.folder / f"{name}.png"
        assert path.stat().st_size > 2_000, name
        with Image.open(path) as img:
            assert img.size == (w, h), name
            assert len(img.convert("L").getcolors(maxcolors=1 << 16) or [0] * 99) > 8, f"{name} is blank"
        assert f'data-name="{name}"' in html
    for name, cols in COLUMNS.items():
        frame = pd.read_csv(r.folder / f"{name}.csv")
        assert set(cols) <= set(frame.columns), (name, list(frame.columns))
        assert f'id="table-{name}"' in html and f"{name}.csv" in html
    for name in ("target_distribution", "umap_data", "diversity", "design_rules", "campaign_hits", "structures"):
        assert len(pd.read_csv(r.folder / f"{name}.csv")), name
    hits = pd.read_csv(r.folder / "campaign_hits.csv")
    assert hits["random_expected"].notna().all() and (hits.groupby("target")["hits"].diff().dropna() >= 0).all()
    structures = pd.read_csv(r.folder / "structures.csv")
    for rel in [*structures["cif"], *structures["poscar"]]:
        assert (r.folder / rel).stat().st_size > 100
        assert rel.split("/")[-1] in html
    pairs = r.switching
    assert 0 < len(pairs) <= 20 and pairs["verified"].all()
    assert (pairs["distance"].diff().dropna() >= -1e-12).all()  # ranked, smallest change first
    s = r.summary
    assert s["verifier"] == "the campaign's acquisition GP" and s["min_probability"] == pytest.approx(0.5**0.5)
    for end, target in ((0, s["targets"][0]), (1, s["targets"][1])):
        known = pairs[f"evidence_{end}"] == "measured"
        assert ((pairs.loc[known, f"measured_{end}"] - target).abs() <= 0.1 + 1e-12).all()
        assert (pairs.loc[~known, f"prob_{end}"] >= 0.5**0.5 - 1e-9).all()  # the rest verified by the GP's odds
    assert s["ends_measured"] == int((pairs[["evidence_0", "evidence_1"]] == "measured").sum().sum())
    both = (pairs["evidence_0"] == "measured") & (pairs["evidence_1"] == "measured")
    assert pairs.loc[both, "confirmed"].all() and s["confirmed_by_campaign"] == int(both.sum())
    assert "<script>alert" not in html


def test_default_style_report_has_every_figure_and_table(mock_report: Any) -> None:
    _check_report(mock_report)
    s = mock_report.result.summary
    assert s["targets"] == [0.0, 1.0] and s["confirm_attempted"] == 0  # mock: no confirmation unless asked
    assert not (mock_report.result.folder / "confirm" / "ledger.jsonl").exists()
    pairs = mock_report.result.switching
    # without an oracle only pairs measured at both ends by the campaign are decided, never by a model
    decided = pairs["confirmed"].notna()
    assert (pairs.loc[decided, ["evidence_0", "evidence_1"]] == "measured").all().all()
    assert set(pairs.loc[~decided, ["evidence_0", "evidence_1"]].stack()) <= {"measured", "predicted"}
    assert s["ends_sent"] == 0
    assert (pd.read_csv(mock_report.result.folder / "candidates.csv")["source"] == "generated").all()
    failures = pd.read_csv(mock_report.result.folder / "campaign_failures.csv")
    assert failures["count"].sum() > 0  # the mock was told to fail some jobs


def test_table_report_confirms_pairs_and_reuses_them(table_report: Any) -> None:
    _check_report(table_report)
    r = table_report.result
    assert r.summary["confirm_attempted"] == len(r.switching) and r.confirm.submitted > 0
    measured = r.switching[["measured_0", "measured_1"]]
    assert measured.notna().all().all()  # pool rows: the table answers every one
    evidence = r.switching[["evidence_0", "evidence_1"]]
    assert set(evidence.stack()) <= {"measured", "confirmed", "refuted"}  # every end checked
    # only ends the campaign never measured were sent
    assert r.summary["ends_sent"] == int((evidence != "measured").sum().sum())
    assert 0 < r.confirm.submitted <= r.summary["ends_sent"]
    assert r.summary["confirmed"] == int(r.switching["confirmed"].sum())
    assert (pd.read_csv(r.folder / "candidates.csv")["source"] == "pool").all()
    ledger = r.folder / "confirm" / "ledger.jsonl"
    lines = ledger.read_text().count("\n")
    same = build_report(table_report.state, table_report.name, ReportOptions(samples=300, umap_points=600))
    assert same.confirm.submitted == 0 and same.confirm.reused > 0
    assert ledger.read_text().count("\n") == lines
    pd.testing.assert_frame_equal(same.switching, r.switching)
    campaign_ledger = table_report.state / table_report.name / "ledger.jsonl"
    assert "confirm:" not in campaign_ledger.read_text()


def test_cli_report(table_report: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.main import main

    out = tmp_path / "cli"
    code = main(
        [
            "report",
            table_report.name,
            "--state",
            str(table_report.state),
            "--out",
            str(out),
            "--samples",
            "200",
            "--switch",
            "0,1.0",
            "--confirm",
            "3",
            "-q",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert f"report: {out / 'report.html'}" in text and "of 3 confirmed by the oracle" in text
    assert text.count(". distance ") == 5
    assert main(["report", "nope", "--state", str(table_report.state)]) == 2
    assert main(["report", table_report.name, "--state", str(table_report.state), "--switch", "x"]) == 2
    assert "innloop: error:" in capsys.readouterr().err
