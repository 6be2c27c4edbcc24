from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agent.core.errors import ConfigError, DataError, DesignError
from agent.core.space import Constraint, DesignSpace, Parameter


def _space() -> DesignSpace:
    positive_sum = Constraint("sum", lambda X: X[:, 0] + X[:, 1] > 1.0, "x + y must exceed 1")
    return DesignSpace("toy", (Parameter("x", 0.0, 2.0, "Å"), Parameter("y", -1.0, 1.0, "V/Å")), (positive_sum,))


def test_unit_box_round_trip() -> None:
    s = _space()
    X = np.array([[0.0, -1.0], [2.0, 1.0], [1.5, 0.25]])
    U = s.to_unit(X)
    np.testing.assert_allclose(U, [[0, 0], [1, 1], [0.75, 0.625]])
    np.testing.assert_allclose(s.from_unit(U), X)


def test_reversed_or_empty_bounds_are_refused() -> None:
    with pytest.raises(ConfigError, match="reversed"):
        Parameter("a", 3.0, 2.0)
    with pytest.raises(ConfigError, match="reversed"):
        Parameter("a", 1.0, 1.0)
    with pytest.raises(ConfigError, match="finite"):
        Parameter("a", 0.0, float("inf"))
    with pytest.raises(ConfigError, match="duplicate"):
        DesignSpace("d", (Parameter("a", 0, 1), Parameter("a", 0, 2)))


def test_validation_names_the_first_problem() -> None:
    s = _space()
    with pytest.raises(DesignError, match=r"row 1: x=2\.5 Å is outside \[0, 2\]"):
        s.validate([[1.5, 0.5], [2.5, 0.0]])
    with pytest.raises(DesignError, match="non-finite value in \\['y'\\]"):
        s.validate([[1.5, np.nan]])
    with pytest.raises(DesignError, match="sum: x \\+ y must exceed 1"):
        s.validate([[0.5, 0.1]])
    with pytest.raises(DesignError, match=r"shape \(n, 2\)"):
        s.validate(np.zeros((3, 4)))
    np.testing.assert_array_equal(
        s.valid_mask([[1.5, 0.5], [2.5, 0.0], [0.2, 0.1], [np.nan, 0]]), [True, False, False, False]
    )


def test_frames() -> None:
    s = _space()
    df = pd.DataFrame({"y": [0.5], "x": [1.5], "extra": [1]})
    np.testing.assert_array_equal(s.from_frame(df), [[1.5, 0.5]])
    with pytest.raises(DataError, match=r"missing design columns \['x'\]"):
        s.from_frame(pd.DataFrame({"y": [0.5]}), source="my.csv")
