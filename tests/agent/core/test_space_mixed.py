"""Mixed design spaces: integers and categories relaxed for the models, snapped back for people."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agent.core.errors import ConfigError, DataError
from agent.core.space import DesignSpace, Parameter, linear_constraint


def recipe() -> DesignSpace:
    params = (
        Parameter.categorical("catalyst", ["Pd", "Ni", "Cu"]),
        Parameter.integer("steps", 1, 4),
        Parameter("temperature", 20.0, 120.0, "°C"),
        Parameter("time", 0.1, 10.0, "h", log=True),
    )
    return DesignSpace(
        "recipe", params, (linear_constraint("budget", {"temperature": 1.0, "steps": 20.0}, 150.0, params),)
    )


def test_relaxation_widths_and_round_trip() -> None:
    space = recipe()
    assert (space.dim, space.unit_dim, space.plain) == (4, 6, False)
    X = np.array([[2, 3, 70.0, 1.0], [0, 1, 20.0, 0.1]])
    U = space.to_unit(X)
    assert U.shape == (2, 6)
    np.testing.assert_array_equal(U[:, :3], [[0, 0, 1], [1, 0, 0]])  # one-hot blocks
    np.testing.assert_allclose(U[:, 3], [2 / 3, 0.0])  # integers scaled like numbers
    np.testing.assert_allclose(U[:, 5], [0.5, 0.0])  # log10 scale: 1 h is the middle of 0.1..10
    np.testing.assert_allclose(space.from_unit(U), X)


def test_from_unit_snaps_relaxed_points() -> None:
    space = recipe()
    with pytest.raises(Exception, match="unit-box points"):
        space.from_unit(np.zeros((2, 7)))  # seven columns: not this space's relaxation
    U = np.array([[0.2, 0.7, 0.1, 0.4, 0.5, 0.3], [0.0, 0.1, 0.3, 0.9, 0.0, 0.7]])
    X = space.from_unit(U)
    assert X[:, 0].tolist() == [1.0, 2.0]  # the largest entry of each block
    assert X[:, 1].tolist() == [2.0, 4.0]  # 1 + 0.4·3 = 2.2 -> 2; 1 + 0.9·3 = 3.7 -> 4
    snapped = space.snap_unit(U)
    np.testing.assert_array_equal(snapped[:, :3], [[0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(snapped[:, 3], [1 / 3, 1.0])
    np.testing.assert_array_equal(snapped[:, 4:], U[:, 4:])  # continuous coordinates untouched
    np.testing.assert_allclose(space.to_unit(space.from_unit(U)), snapped)


def test_validity_needs_whole_numbers_and_the_constraint() -> None:
    space = recipe()
    X = np.array([[0, 2, 100.0, 1.0], [0, 2.5, 100.0, 1.0], [3, 2, 100.0, 1.0], [0, 3, 100.0, 1.0]])
    assert space.valid_mask(X).tolist() == [True, False, False, False]
    problems = space.problems(X)
    assert problems[0] is None
    assert "steps=2.5 is not a whole number (integer)" in str(problems[1])
    assert "catalyst=3" in str(problems[2]) and "outside" in str(problems[2])
    assert "budget: 1·temperature + 20·steps must be at most 150" in str(problems[3])


def test_tables_and_rows_show_real_values() -> None:
    space = recipe()
    X = np.array([[1, 2, 55.5, 2.0]])
    frame = space.to_frame(X)
    assert frame.iloc[0].tolist() == ["Ni", 2, 55.5, 2.0]
    assert frame["steps"].dtype == np.int64
    rows = space.to_rows(X)
    assert rows == [{"catalyst": "Ni", "steps": 2, "temperature": 55.5, "time": 2.0}]
    assert isinstance(rows[0]["steps"], int)
    np.testing.assert_array_equal(space.from_rows(rows), X)
    np.testing.assert_array_equal(space.from_frame(frame), X)
    assert space.describe(X) == "catalyst='Ni', steps=2, temperature=55.5 °C, time=2 h"


def test_unknown_categories_and_missing_keys_are_named() -> None:
    space = recipe()
    bad = pd.DataFrame({"catalyst": ["Pd", "Pt"], "steps": [1, 2], "temperature": [50.0, 60.0], "time": [1.0, 1.0]})
    with pytest.raises(
        DataError, match=r"column 'catalyst' has 1 values not among its categories .*first 'Pt' at row 1"
    ):
        space.from_frame(bad, source="lab.csv")
    with pytest.raises(DataError, match=r"design 0 lacks \['time'\]"):
        space.from_rows([{"catalyst": "Pd", "steps": 1, "temperature": 50.0}])


def test_sampling_covers_every_category_and_integer() -> None:
    space = recipe()
    U = space.sample_unit(np.random.default_rng(0), 3000)
    X = space.from_unit(U)
    assert U.shape == (3000, 6) and space.valid_mask(X).all()
    np.testing.assert_allclose(space.snap_unit(U), U)  # samples are real designs
    assert sorted(set(X[:, 0].tolist())) == [0.0, 1.0, 2.0]
    assert sorted(set(X[:, 1].tolist())) == [1.0, 2.0, 3.0, 4.0]
    counts = np.bincount(X[:, 0].astype(int))
    assert counts.min() > 800  # each catalyst about a third
    assert np.median(np.log10(X[:, 3])) == pytest.approx(0.0, abs=0.1)  # uniform in log10


def test_plain_spaces_are_unchanged() -> None:
    space = DesignSpace.box("box", [("a", 0.0, 2.0, ""), ("b", -1.0, 1.0, "")])
    U = np.random.default_rng(1).random((5, 2))
    assert space.plain and space.unit_dim == 2
    np.testing.assert_array_equal(space.snap_unit(U), U)
    np.testing.assert_array_equal(space.to_unit(space.from_unit(U)), (space.from_unit(U) - space.lower) / 2.0 * [1, 1])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Parameter.categorical("c", []), "empty category list"),
        (lambda: Parameter.categorical("c", ["x"]), "one category"),
        (lambda: Parameter.categorical("c", ["x", "x"]), "listed twice"),
        (lambda: Parameter.integer("n", 3, 1), "reversed or empty bounds"),
        (lambda: Parameter("n", 0.5, 2.5, kind="integer"), "must be integers"),
        (lambda: Parameter("t", 0.0, 1.0, log=True), "log scale needs"),
        (lambda: Parameter("t", 0.0, 1.0, kind="ordinal"), "unknown type 'ordinal'"),  # type: ignore[arg-type]
    ],
)
def test_bad_parameters_are_refused(make: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()  # type: ignore[operator]


def test_linear_constraints_refuse_categories_and_unknown_names() -> None:
    params = recipe().parameters
    with pytest.raises(ConfigError, match="'catalyst' is categorical"):
        linear_constraint("c", {"catalyst": 1.0}, 1.0, params)
    with pytest.raises(ConfigError, match="unknown parameter 'pressure'"):
        linear_constraint("c", {"pressure": 1.0}, 1.0, params)
