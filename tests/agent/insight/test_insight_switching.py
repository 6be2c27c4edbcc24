from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from agent.core.errors import DataError
from agent.core.materials import get_material
from agent.core.materials.mos2 import A0, C0
from agent.insight.switching import (
    describe_change,
    find_pairs,
    in_window_candidates,
    pair_table,
    verify_pairs,
)
from agent.insight.transitions import switching_report

SPACE = get_material("mos2").space
REF = np.array([A0, A0, C0, 90.0, 90.0, 120.0, 0.0])


def cell(**changes: float) -> np.ndarray:
    """The reference cell with some parameters replaced (physical units)."""
    x = REF.copy()
    for name, value in changes.items():
        x[SPACE.names.index(name)] = value
    return x


class StrainGap:
    """A fake surrogate: gap 1.0 eV when a is stretched by more than 2 %, else 0; fixed σ."""

    def __init__(self, sigma: float = 0.02) -> None:
        self.sigma = sigma

    def predict(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = SPACE.from_unit(U)[:, 0]
        return np.where(a > 1.02 * A0, 1.0, 0.0), np.full(len(a), self.sigma)


def brute_force(X0: np.ndarray, X1: np.ndarray, top: int) -> list[tuple[int, int, float]]:
    D = np.linalg.norm(SPACE.to_unit(X0)[:, None, :] - SPACE.to_unit(X1)[None, :, :], axis=-1)
    edges = sorted((float(D[i, j]), j, i) for i, j in itertools.product(range(len(X0)), range(len(X1))))
    used0: set[int] = set()
    used1: set[int] = set()
    out = []
    for d, j, i in edges:
        if i not in used0 and j not in used1:
            used0.add(i)
            used1.add(j)
            out.append((i, j, d))
    return out[:top]


def test_smallest_pair_is_found_and_distance_is_unit_box() -> None:
    X0 = np.array([cell(a=0.95 * A0), cell(a=1.00 * A0), cell(c=0.9 * C0)])
    X1 = np.array([cell(a=1.10 * A0), cell(a=1.04 * A0)])
    pairs = find_pairs(X0, X1, SPACE, top=5)
    assert pairs[0][:2] == (1, 1)
    assert pairs[0][2] == pytest.approx(0.04 * A0 / (SPACE.upper[0] - SPACE.lower[0]))
    assert len(pairs) == 2, "each design at most once: two rows of X1 give two pairs"


def test_dedupe_keeps_one_design_from_filling_the_table() -> None:
    hub = cell(a=1.0 * A0)
    X0 = np.array([hub, cell(a=0.9 * A0), cell(a=0.85 * A0)])
    X1 = np.array([cell(a=1.03 * A0), cell(a=1.05 * A0), cell(a=1.07 * A0)])
    shared = find_pairs(X0, X1, SPACE, top=3, exclusive=False)
    assert [p[0] for p in shared] == [0, 0, 0]
    exclusive = find_pairs(X0, X1, SPACE, top=3)
    assert sorted(p[0] for p in exclusive) == [0, 1, 2] and sorted(p[1] for p in exclusive) == [0, 1, 2]
    assert exclusive[0][:2] == (0, 0)


def test_greedy_matches_brute_force_on_random_designs() -> None:
    rng = np.random.default_rng(3)
    X0, X1 = SPACE.from_unit(rng.random((60, 7))), SPACE.from_unit(rng.random((45, 7)))
    for top in (1, 5, 30, 100):
        got = find_pairs(X0, X1, SPACE, top=top)
        want = brute_force(X0, X1, top)
        assert [p[:2] for p in got] == [p[:2] for p in want]
        np.testing.assert_allclose([p[2] for p in got], [p[2] for p in want])


def test_weights_make_a_parameter_free() -> None:
    X0 = np.array([cell(efield=-0.9), cell(c=0.96 * C0)])
    X1 = np.array([cell(efield=0.9)])
    assert find_pairs(X0, X1, SPACE, top=1)[0][0] == 1
    assert find_pairs(X0, X1, SPACE, top=1, weights={"efield": 0.0})[0][:2] == (0, 0)
    with pytest.raises(DataError, match="unknown parameter"):
        find_pairs(X0, X1, SPACE, weights={"field": 0.0})
    assert find_pairs(X0[:0], X1, SPACE) == []


def test_change_sentence_signs_units_and_threshold() -> None:
    x0 = cell()
    x1 = cell(a=1.002 * A0, b=1.061 * A0, c=0.93 * C0, efield=0.82)
    text = describe_change(x0, x1, SPACE)
    assert text == "+0.82 V/Å field, −7.0 % strain along c, +6.1 % along b"
    assert "along a" not in text, "0.2 % along a is below the threshold"
    assert describe_change(x0, cell(gamma=117.6), SPACE) == "−2.4° in γ"
    assert describe_change(x0, x0, SPACE) == "no change"
    assert describe_change(x0, x1, SPACE, weights={"efield": 0.0}) == "−7.0 % strain along c, +6.1 % along b"


def test_pair_table_and_verification_flags() -> None:
    X0 = np.array([cell(a=1.00 * A0), cell(a=1.015 * A0)])
    X1 = np.array([cell(a=1.05 * A0), cell(a=1.025 * A0)])
    t = pair_table(X0, X1, find_pairs(X0, X1, SPACE, top=2), SPACE)
    assert list(t.columns[:5]) == ["rank", "distance", "change", "index_0", "index_1"]
    assert [f"{n}_0" for n in SPACE.names] + [f"{n}_1" for n in SPACE.names] == list(t.columns[5:])
    assert t["a_1"].iloc[0] == pytest.approx(1.025 * A0) and t["a_0"].iloc[0] == pytest.approx(1.015 * A0)
    v = verify_pairs(t, StrainGap(), SPACE, targets=(0.0, 1.0), windows=0.1)
    assert v["verified"].tolist() == [True, True]
    assert v[["pred_0", "pred_1"]].to_numpy().tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert not verify_pairs(t, StrainGap(), SPACE, targets=(1.0, 1.0))["verified"].any()
    assert not verify_pairs(t, StrainGap(0.2), SPACE, targets=(0.0, 1.0), max_sigma=0.1)["verified"].any()
    assert verify_pairs(t, StrainGap(0.2), SPACE, targets=(0.0, 1.0), windows=(0.0, 0.0))["verified"].all()


def test_in_window_candidates_keeps_index_and_predictions() -> None:
    pool = pd.DataFrame([cell(a=0.99 * A0), cell(a=1.05 * A0), cell(a=1.10 * A0)], columns=SPACE.names, index=[7, 8, 9])
    got = in_window_candidates(pool, StrainGap(), SPACE, target=1.0, window=0.1)
    assert got.index.tolist() == [8, 9] and got["pred"].tolist() == [1.0, 1.0]
    assert in_window_candidates(pool, StrainGap(), SPACE, target=1.0, window=0.1, max_sigma=0.01).empty


def test_switching_report_without_oracle() -> None:
    set0 = np.array([cell(a=1.00 * A0), cell(a=1.03 * A0), cell(a=0.9 * A0)])  # row 1 is really at 1 eV
    set1 = np.array([cell(a=1.025 * A0), cell(a=1.10 * A0)])
    rep = switching_report(set0, set1, space=SPACE, model=StrainGap(), targets=(0.0, 1.0), top=5)
    t = rep.table
    assert t["index_0"].tolist() == [0, 2] and t["index_1"].tolist() == [0, 1]
    assert t["verified"].all() and t["confirmed"].isna().all() and t["measured_0"].isna().all()
    assert t.columns[-1] == "note"
    assert rep.summary["in_window"] == [2, 2] and rep.summary["pairs"] == 2 and rep.summary["confirmed"] == 0
    loose = switching_report(set0, set1, space=SPACE, model=StrainGap(), targets=(0.0, 1.0), require_verified=False)
    assert loose.table["index_0"].iloc[0] == 1 and not loose.table["verified"].iloc[0]
    assert loose.summary["pairs"] == 2 and loose.summary["verified"] == 1
