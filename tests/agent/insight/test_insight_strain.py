from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from agent.core.errors import DataError, UnknownNameError
from agent.core.materials import ReferenceCell, base, get_material, register_material
from agent.core.materials.mos2 import A0, C0
from agent.insight.strain import (
    FEATURES,
    cell_reference,
    features_by_group,
    quantile_table,
    strain_features,
)

REF = [A0, A0, C0, 90.0, 90.0, 120.0, 0.0]


def test_reference_cell_has_zero_strain() -> None:
    f = strain_features(np.array([REF, REF]))
    assert list(f.columns) == list(FEATURES)
    np.testing.assert_allclose(f.to_numpy(), 0.0, atol=1e-12)


def test_reference_matches_the_material_and_sits_mid_box() -> None:
    ref = cell_reference(get_material("mos2"))
    assert ref is cell_reference("mos2") is get_material("mos2").reference_cell
    assert ref.lengths == (A0, A0, C0) and ref.angles == (90.0, 90.0, 120.0)
    space = get_material("mos2").space
    mid = (space.lower + space.upper)[:6] / 2
    np.testing.assert_allclose(mid, ref.lengths + ref.angles, rtol=2e-3)


def test_the_reference_is_the_one_the_material_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    wider = ReferenceCell((3.32, 3.32, 13.0), (90.0, 90.0, 120.0))
    register_material(dataclasses.replace(get_material("mos2"), name="wse2_like", reference_cell=wider))
    f = strain_features(np.array([[3.32 * 1.05, 3.32, 13.0, 90.0, 90.0, 120.0, 0.0]]), "wse2_like")
    assert f.loc[0, "strain_a"] == pytest.approx(5.0) and f.loc[0, "strain_c"] == pytest.approx(0.0)
    register_material(dataclasses.replace(get_material("mos2"), name="no_cell", reference_cell=None))
    with pytest.raises(UnknownNameError, match="no reference"):
        strain_features(np.array([REF]), "no_cell")


def test_known_strains() -> None:
    x = pd.DataFrame(
        [[1.06 * A0, 0.93 * A0, 1.10 * C0, 99.0, 81.0, 126.0, 0.5]],
        columns=["a", "b", "c", "alpha", "beta", "gamma", "efield"],
        index=["cell"],
    )
    f = strain_features(x).loc["cell"]
    assert f["strain_a"] == pytest.approx(6.0)
    assert f["strain_b"] == pytest.approx(-7.0)
    assert f["strain_c"] == pytest.approx(10.0)
    assert (f["angle_alpha"], f["angle_beta"], f["angle_gamma"]) == pytest.approx((9.0, -9.0, 6.0))
    assert f["shear_alpha"] == pytest.approx(100 * math.tan(math.radians(9.0)))
    assert f["shear_beta"] == pytest.approx(-100 * math.tan(math.radians(9.0)))
    assert f["in_plane"] == pytest.approx((6.0 - 7.0 + 5.0) / 3)  # gamma 126 = +5 % of 120
    assert f["out_of_plane"] == pytest.approx((10.0 + 10.0 - 10.0) / 3)
    assert f["normal_mean"] == pytest.approx(3.0)
    assert f["normal_abs_mean"] == pytest.approx(23.0 / 3)
    shears = [100 * math.tan(math.radians(t)) for t in (9.0, -9.0, 6.0)]
    assert f["shear_mean"] == pytest.approx(sum(shears) / 3)
    assert f["shear_abs_mean"] == pytest.approx(sum(map(abs, shears)) / 3)


def test_bad_inputs_are_one_clear_error() -> None:
    with pytest.raises(DataError, match="gamma"):
        strain_features(pd.DataFrame({"a": [3.0], "b": [3.0], "c": [12.0], "alpha": [90], "beta": [90]}))
    with pytest.raises(DataError, match="shape"):
        strain_features(np.zeros((2, 4)))
    with pytest.raises(UnknownNameError, match="graphene"):
        strain_features(np.array([REF]), "graphene")


def test_quantile_table_per_group() -> None:
    feats = pd.DataFrame({"x": np.r_[np.arange(101.0), np.full(11, 7.0)], "y": np.r_[-np.arange(101.0), np.zeros(11)]})
    groups = ["0 eV"] * 101 + ["1 eV"] * 11
    q = quantile_table(feats, groups)
    assert list(q.columns) == ["group", "feature", "n", "q05", "q25", "q50", "q75", "q95"]
    assert list(zip(q["group"], q["feature"])) == [("0 eV", "x"), ("0 eV", "y"), ("1 eV", "x"), ("1 eV", "y")]
    first = q.iloc[0]
    assert first["n"] == 101
    assert (first["q05"], first["q50"], first["q95"]) == pytest.approx((5.0, 50.0, 95.0))
    assert q.iloc[2][["q05", "q95"]].tolist() == [7.0, 7.0]


def test_quantile_table_from_a_group_column_of_real_designs() -> None:
    data = get_material("mos2").dataset().frame  # type: ignore[misc]
    low, high = data[data["gap"] == 0.0].head(200), data[(data["gap"] - 1.0).abs() <= 0.1].head(200)
    feats = features_by_group({"0 eV": low, "1.0 eV": high})
    assert list(feats.columns) == ["group", *FEATURES] and len(feats) == len(low) + len(high)
    q = quantile_table(feats, "group", columns=["normal_abs_mean", "shear_abs_mean"])
    assert len(q) == 4 and set(q["group"]) == {"0 eV", "1.0 eV"}
    assert (q[["q05", "q25", "q50", "q75", "q95"]].diff(axis=1).iloc[:, 1:] >= 0).all().all()
    assert (q["q05"] >= 0).all(), "absolute strains are never negative"
    with pytest.raises(DataError, match="labels"):
        quantile_table(feats, ["x"])
