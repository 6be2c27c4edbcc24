"""Targets as ranges: the one rule for hits, window probability, anchors and labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.core.errors import ConfigError
from agent.core.targets import TargetRange


def test_value_and_window_keep_the_written_rule() -> None:
    t = TargetRange.around(1.0, 0.1)
    y = np.array([0.9, 0.9 - 1e-9, 1.1, 1.1000000000001, np.nan])
    assert t.contains(y).tolist() == [True, False, True, True, False]
    assert t.anchor(np.array([5.0])) == 1.0 and t.label("eV") == "1 ± 0.1 eV" and t.slug() == "1"


def test_one_sided_and_two_sided_ranges() -> None:
    at_least = TargetRange(0.8, math.inf)
    assert at_least.contains(np.array([0.79, 0.8, 1.0])).tolist() == [False, True, True]
    assert at_least.distance(np.array([0.7, 0.9])).tolist() == pytest.approx([0.1, 0.0])
    assert at_least.label() == "≥ 0.8" and at_least.slug() == "ge0.8" and at_least.one_sided
    at_most = TargetRange(-math.inf, 0.2)
    assert at_most.contains(np.array([-5.0, 0.3])).tolist() == [True, False] and at_most.label("eV") == "≤ 0.2 eV"
    between = TargetRange(0.5, 0.7)
    assert between.anchor(np.array([])) == pytest.approx(0.6) and between.label() == "0.5–0.7"


def test_open_side_anchor_is_inside_what_is_known_and_possible() -> None:
    t = TargetRange(0.8, math.inf)
    assert t.anchor(np.array([0.1, 0.95, np.nan])) == pytest.approx(0.875)  # middle of 0.8..0.95
    assert t.anchor(np.array([0.1, 1.4]), ceiling=1.0) == pytest.approx(0.9)  # no further than the ceiling
    assert t.anchor(np.array([0.1, 0.5])) == pytest.approx(0.8)  # nothing known beyond: the edge
    low = TargetRange(-math.inf, 0.2)
    assert low.anchor(np.array([-0.4, 0.5]), floor=0.0) == pytest.approx(0.1)


@pytest.mark.parametrize(("lo", "hi"), [(1.0, 1.0), (2.0, 1.0), (-math.inf, math.inf), (math.nan, 1.0)])
def test_empty_or_open_ranges_are_refused(lo: float, hi: float) -> None:
    with pytest.raises(ConfigError):
        TargetRange(lo, hi)
