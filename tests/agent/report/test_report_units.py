"""Report pieces on their own: tables, HTML escaping, figure sizes (the confirmation journal: test_report_confirm)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from agent.report import SIZES, figures, tables
from agent.report.html import Figure, Section, Table, render
from agent.report.inputs import Target


def test_hits_table_counts_diverse_hits_and_random_expectation() -> None:
    U = np.array([[0.0, 0.0], [0.01, 0.0], [0.5, 0.5], [0.9, 0.9]])
    y = np.array([1.0, 1.02, np.nan, 1.05])
    t = tables.hits_table(U, y, [Target.around(1.0, 0.1)], 0.1, U, np.array([1.0, 0.0, 0.0, 1.0]), repeats=50)
    assert list(t.columns) == ["calls", "target", "hits", "random_expected"]
    assert t["hits"].tolist() == [1, 1, 1, 2]  # the near-duplicate and the failure do not count
    # two of four random rows are hits and far apart: after all four calls exactly 2
    assert t["random_expected"].iloc[-1] == pytest.approx(2.0)
    assert 0.0 < t["random_expected"].iloc[0] < 1.0


def test_calibration_curve_of_perfectly_gaussian_errors() -> None:
    z = np.random.default_rng(0).standard_normal(20_000)
    curve = tables.calibration_curve(pd.DataFrame({"z": z}))
    assert np.allclose(curve["observed"], curve["level"], atol=0.02)
    assert curve["n"].iloc[0] == 20_000


def test_distribution_and_batch_error_tables() -> None:
    d = tables.distribution_table(np.array([0.0, 0.5, 1.0]), np.array([0.2, np.nan]), bins=4)
    assert d["data_count"].sum() == 3 and d["campaign_count"].sum() == 1
    history: list[dict[str, Any]] = [
        {"iteration": 0, "oracle_calls": 20, "batch_mae": None, "fit": {}},
        {"iteration": 1, "batch_mae": 0.1},
    ]
    b = tables.batch_error_table(history)
    assert b["batch_mae"].isna().tolist() == [True, False]


def test_design_rules_quantiles_per_target() -> None:
    from agent.insight import cell_reference

    ref = cell_reference("mos2")
    cell = dict(zip(("a", "b", "c", "alpha", "beta", "gamma"), (*ref.lengths, *ref.angles))) | {"efield": 0.0}
    frame = pd.DataFrame([cell] * 3)
    stretched = frame.assign(a=ref.lengths[0] * 1.1)
    points, q = tables.design_rule_tables(
        [Target.around(0.0, 0.1, "eV"), Target.around(1.0, 0.1, "eV")], [frame, stretched], "mos2"
    )
    assert len(points) == 6
    row = q[(q["group"] == "1 eV") & (q["feature"] == "normal_mean")].iloc[0]
    assert row["q50"] == pytest.approx(10.0 / 3, rel=1e-6)  # +10 % along a only, averaged over a, b, c


def test_every_figure_has_its_fixed_size_even_when_empty() -> None:
    empty = {
        "data_distribution": (tables.distribution_table(None, np.zeros(0)), "gap", "eV"),
        "data_umap": (pd.DataFrame(columns=["u1", "u2", "gap"]), "t"),
        "diversity": (pd.DataFrame(columns=["target", "set", "in_plane", "out_of_plane"]),),
        "design_rules": (pd.DataFrame(columns=["target", *tables.RULE_FEATURES]), tables.RULE_FEATURES),
        "switching_umap": (pd.DataFrame(columns=["u1", "u2", "set"]), "t"),
        "campaign_hits": (pd.DataFrame(columns=["calls", "target", "hits", "random_expected"]),),
        "campaign_error": (tables.batch_error_table([]),),
        "campaign_calibration": (tables.calibration_curve(pd.DataFrame({"z": []})),),
        "campaign_failures": (tables.failure_table([]),),
        "campaign_stages": (tables.stage_table([]),),
    }
    assert set(empty) == set(SIZES)
    for name, args in empty.items():
        kwargs = {"colour": "gap"} if name == "data_umap" else {}
        with Image.open(io.BytesIO(figures.draw(name, *args, **kwargs))) as img:
            assert img.size == SIZES[name], name


def test_html_escapes_campaign_text_and_embeds_images() -> None:
    png = figures.draw("campaign_failures", tables.failure_table([]))
    evil = "<script>alert(1)</script>"
    page = render(
        f"report {evil}",
        [evil],
        [Section(evil, [evil], [Figure("f", evil, png), Table("t", evil, pd.DataFrame({evil: [evil, 1.5]}))])],
    )
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("data:image/png;base64,") == 1 and 'id="image-check"' in page


def test_posterior_predictor_matches_the_joint_posterior_of_a_gp() -> None:
    import torch

    from agent.models.gp import fit_gp
    from agent.report.switch import PosteriorPredictor

    rng = np.random.default_rng(0)
    U = rng.random((25, 3))
    y = np.sin(3 * U[:, 0]) + U[:, 1]
    gp = fit_gp(U, y, max_points=25)
    Q = rng.random((7, 3))
    mean, std = PosteriorPredictor(gp, chunk=3).predict(Q)
    with torch.no_grad():
        post = gp.posterior(torch.as_tensor(Q))
    assert np.allclose(mean, post.mean[:, 0].numpy()) and np.allclose(std, post.variance[:, 0].sqrt().numpy())
    empty_mean, empty_std = PosteriorPredictor(gp).predict(np.zeros((0, 3)))
    assert empty_mean.shape == (0,) and empty_std.shape == (0,)
