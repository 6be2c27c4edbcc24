"""Spreading a target's hits over regions: probes where no hit is, then the least crowded."""

from __future__ import annotations

import numpy as np

from agent.design.acquisition import SelectionConfig, Spread, choose_batch

CENTRES = {"A": (0.2, 0.2), "B": (0.8, 0.2), "C": (0.2, 0.8), "D": (0.8, 0.8)}
PROB = {"A": 0.95, "B": 0.6, "C": 0.6, "D": 0.02}  # D: below the probe floor (0.05)


def _regions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four regions of 25 candidates (a 5 x 5 grid, 0.02 apart); log window probability per region."""
    offsets = np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1).reshape(-1, 2) * 0.02 - 0.04
    U, names = [], []
    for name, centre in CENTRES.items():
        U.append(np.asarray(centre) + offsets)
        names += [name] * 25
    region = np.array(names)
    log_pf = np.log(np.array([PROB[r] for r in region]))[None]
    return np.vstack(U), region, log_pf


CFG = SelectionConfig(batch_size=8, exploration=0.0, min_distance=0.01)


def test_without_spread_every_hit_slot_goes_to_the_likeliest_region() -> None:
    U, region, log_pf = _regions()
    hits = U[region == "A"][:3]
    choice = choose_batch(log_pf, np.ones(len(U)), U, [10], CFG, hits=[hits])
    assert set(region[choice.index]) == {"A"}


def test_spread_probes_uncovered_regions_then_fills_the_least_crowded() -> None:
    U, region, log_pf = _regions()
    hits = U[region == "A"][[0, 12, 24]]  # three hits already in A
    choice = choose_batch(log_pf, np.ones(len(U)), U, [10], CFG, hits=[hits], spread=[Spread(0.2)])
    picked = region[choice.index].tolist()
    assert len(picked) == 8 and set(choice.reason) == {"exploit"}
    assert sorted(picked[:2]) == ["B", "C"], "one probe in each region no hit has reached"
    assert "D" not in picked, "a region below the probe floor is never probed"
    # B and C fill up to A's three hits before A gets another: B 4, C 3, A 1
    assert {r: picked.count(r) for r in "ABC"} == {"A": 1, "B": 4, "C": 3}


def test_pending_designs_crowd_a_region_as_hits_do() -> None:
    U, region, log_pf = _regions()
    pending = U[region == "B"][:2]  # B is being measured already
    hits = U[region == "A"][:1]
    choice = choose_batch(log_pf, np.ones(len(U)), U, [10], CFG, pending=pending, hits=[hits], spread=[Spread(0.2)])
    picked = region[choice.index].tolist()
    assert picked[0] == "C", "the one uncovered likely region is probed first"


def test_no_probes_and_a_strict_floor_leave_only_the_likeliest_candidates() -> None:
    U, region, log_pf = _regions()
    cfg = SelectionConfig(batch_size=8, exploration=0.0, min_distance=0.01, probe_share=0.0, spread_floor=1.0)
    choice = choose_batch(log_pf, np.ones(len(U)), U, [10], cfg, hits=[U[region == "A"][:3]], spread=[Spread(0.2)])
    assert set(region[choice.index]) == {"A"}
