"""Evidence in the switching table: campaign measurements as candidates, window probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.core.materials import get_material
from agent.core.materials.mos2 import A0, C0
from agent.insight.confirm import confirm_pairs, known_ends
from agent.insight.switching import pair_table, verify_pairs, window_mask, window_probability, with_measurements
from agent.insight.transitions import switching_report
from oracles.base import Handle
from oracles.table import TableOracle

MAT = get_material("mos2")
SPACE = MAT.space
REF = np.array([A0, A0, C0, 90.0, 90.0, 120.0, 0.0])


def cell(**changes: float) -> np.ndarray:
    x = REF.copy()
    for name, value in changes.items():
        x[SPACE.names.index(name)] = value
    return x


class Metal:
    """Every design a metal (0 eV), without doubt."""

    def predict(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(U)), np.zeros(len(U))


class ByStrain:
    """Gap 1.0 eV when a is stretched by more than 2 %, else 0, with σ ``sigma``."""

    def __init__(self, sigma: float = 0.02) -> None:
        self.sigma = sigma

    def predict(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = SPACE.from_unit(U)[:, 0]
        return np.where(a > 1.02 * A0, 1.0, 0.0), np.full(len(a), self.sigma)


class Counting(TableOracle):
    """The bundled table, remembering every design submitted."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, float]] = []

    def submit(self, designs: Any) -> list[Handle]:
        handles = super().submit(designs)
        self.sent.extend(h.design for h in handles)
        return handles


def test_window_probability_is_gaussian_mass_and_a_step_without_sigma() -> None:
    p = window_probability(np.array([0.0, 0.1, 0.5, 0.05, 0.2]), np.array([0.1, 0.1, 0.1, 0.0, 0.0]), 0.0, 0.1)
    assert p[0] == pytest.approx(0.6826894921, abs=1e-9)  # ±1σ
    assert p[1] == pytest.approx(0.4772498681, abs=1e-9)  # mean on the edge: half of ±2σ
    assert p[2] < 1e-4 and p[3] == 1.0 and p[4] == 0.0
    mean, std = np.array([0.05, 0.05]), np.array([0.01, 0.2])
    assert window_mask(mean, std, 0.0, 0.1, None).tolist() == [True, True]  # the mean rule ignores σ
    assert window_mask(mean, std, 0.0, 0.1, None, min_probability=np.sqrt(0.5)).tolist() == [True, False]


def test_with_measurements_adds_drops_and_averages() -> None:
    cands = np.array([cell(a=0.95 * A0), cell(a=0.97 * A0), cell(a=0.99 * A0)])
    far = cell(a=0.90 * A0)
    measured_X = np.array([cell(a=0.97 * A0), cell(a=0.99 * A0), far, far, cell(c=C0 * 0.9)])
    measured_y = np.array([0.05, 0.4, 0.02, 0.06, np.nan])
    X, v = with_measurements(cands, measured_X, measured_y, SPACE, target=0.0, window=0.1)
    # candidate 0 kept (unmeasured), 1 kept with its value, 2 dropped (measured 0.4),
    # the repeated in-window design appended once with the mean of its values, the failure ignored
    assert np.allclose(X, [cands[0], cands[1], far])
    assert np.isnan(v[0]) and v[1] == pytest.approx(0.05) and v[2] == pytest.approx(0.04)
    X, v = with_measurements(cands, np.zeros((0, 7)), np.zeros(0), SPACE, target=0.0, window=0.1)
    assert np.allclose(X, cands) and np.isnan(v).all()
    X, v = with_measurements(np.zeros((0, 7)), measured_X, measured_y, SPACE, target=1.0, window=0.1)
    assert len(X) == 0 and len(v) == 0


def test_verify_pairs_trusts_a_measured_end_over_the_model() -> None:
    t = pair_table(np.array([cell(a=0.98 * A0)]), np.array([cell(a=1.01 * A0)]), [(0, 0, 0.0)], SPACE)
    plain = verify_pairs(t, ByStrain(), SPACE, targets=(0.0, 1.0))
    assert not plain["verified"].iloc[0] and {"prob_0", "prob_1"} <= set(plain.columns)
    t["measured_0"], t["measured_1"] = np.nan, 1.03
    t["evidence_0"], t["evidence_1"] = "predicted", "measured"
    assert verify_pairs(t, ByStrain(), SPACE, targets=(0.0, 1.0))["verified"].iloc[0]


def test_measured_ends_are_not_sent_and_pairs_of_measurements_cost_nothing() -> None:
    d = MAT.dataset().deduplicate("exact").frame  # type: ignore[misc]
    metals = d.loc[d["gap"] == 0.0, SPACE.names].to_numpy()[:3]
    ones = d.loc[(d["gap"] - 1.0).abs() <= 0.02]
    one_X, one_y = ones[SPACE.names].to_numpy()[:3], ones["gap"].to_numpy()[:3]
    # the campaign measured one metal and all three 1 eV rows; 1 eV candidates come from measurements only
    measured = (np.vstack([metals[:1], one_X]), np.concatenate([[0.0], one_y]))
    oracle = Counting()
    rep = switching_report(
        metals,
        np.zeros((0, SPACE.dim)),
        space=SPACE,
        model=Metal(),
        targets=(0.0, 1.0),
        measured=measured,
        oracle=oracle,
        confirm_top=1,
        poll_interval=0.001,
    )
    t = rep.table
    assert rep.summary["measured_candidates"] == [1, 3] and rep.summary["pairs"] == 3
    assert set(t["evidence_1"]) == {"measured"}  # only measured designs are at 1 eV
    assert known_ends(t)[:, 1].all()
    first_metal_measured = t["index_0"].to_numpy() == 0
    # rank 1 is checked: its unmeasured end (if any) is sent; ranks 2-3 are checked only if both ends are measured
    sent_for_rank1 = 0 if first_metal_measured[0] else 1
    assert len(oracle.sent) == sent_for_rank1 == rep.summary["ends_sent"]
    assert t["confirmed"].iloc[0]
    for r in range(1, 3):
        assert t["confirmed"].iloc[r] if first_metal_measured[r] else pd.isna(t["confirmed"].iloc[r])
    assert set(t["evidence_0"]) <= {"measured", "confirmed", "predicted"}
    assert rep.summary["ends_measured"] == 3 + int(first_metal_measured.sum())


def test_model_probability_keeps_a_wide_model_from_verifying() -> None:
    set0 = np.array([cell(a=0.98 * A0), cell(a=0.96 * A0)])
    set1 = np.array([cell(a=1.04 * A0), cell(a=1.06 * A0)])
    sure, unsure = ByStrain(0.02), ByStrain(0.2)
    by_mean = switching_report(set0, set1, space=SPACE, model=unsure, targets=(0.0, 1.0))
    assert by_mean.summary["pairs"] == 2 and by_mean.summary["min_probability"] is None
    level = float(np.sqrt(0.5))
    wide = switching_report(set0, set1, space=SPACE, model=unsure, targets=(0.0, 1.0), min_probability=level)
    assert wide.table.empty and wide.summary["in_window"] == [0, 0]
    rep = switching_report(set0, set1, space=SPACE, model=sure, targets=(0.0, 1.0), min_probability=level)
    assert rep.summary["pairs"] == 2 and (rep.table[["prob_0", "prob_1"]] > level).all().all()
    # a measurement in the window verifies an end the unsure model cannot
    measured = (set0[:1], np.array([0.0]))
    got = switching_report(
        set0, set1[:0], space=SPACE, model=unsure, targets=(0.0, 1.0), min_probability=level, measured=measured
    )
    assert got.summary["in_window"] == [1, 0] and got.table.empty


def test_confirm_pairs_without_oracle_checks_only_measured_pairs() -> None:
    X0, X1 = np.array([cell(), cell(b=0.9 * A0)]), np.array([cell(a=1.05 * A0)] * 2)
    t = pair_table(X0, X1, [(0, 0, 0.1), (1, 1, 0.2)], SPACE)
    t["measured_0"], t["measured_1"] = [0.02, np.nan], [0.95, 1.0]
    t["evidence_0"], t["evidence_1"] = ["measured", "predicted"], ["measured", "measured"]
    got = confirm_pairs(t, None, SPACE, targets=(0.0, 1.0))
    assert got["confirmed"].iloc[0] and pd.isna(got["confirmed"].iloc[1])
    assert got["evidence_0"].tolist() == ["measured", "predicted"] and np.isnan(got["measured_0"].iloc[1])
