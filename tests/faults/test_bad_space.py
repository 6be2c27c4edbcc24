"""Bad ``[space]`` sections and their CSV files: one clear line each, and nothing written.

A design space declared in the campaign file is checked with the rest of the file, so
each mistake is one line of the one error, named by its place (``space.parameters.2``),
and no campaign folder is created. The CSV files of such a campaign (its prior data,
the table it replays) are read against the declared space before anything runs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from oracles.testing.recipe import recipe_space, recipe_yield
from tests.faults.corpus import check_error, run_tiny

EXPERIMENT = Path(__file__).resolve().parents[2] / "agent" / "configs" / "experiment.toml"
SPACE = EXPERIMENT.read_text(encoding="utf-8").split("[[targets]]", 1)[1]
TINY = f"""\
name = "tiny-space"
seed = 1
[[targets]]{SPACE}"""
TINY = TINY.replace('name = "http"', 'name = "recipe"').replace(
    '[oracle.settings]\nurl = "http://127.0.0.1:8765"\n', ""
)
TINY = "\n".join(line for line in TINY.splitlines() if not line.startswith(("timeout_s", "retries", "backoff_s")))


def _swap(old: str, new: str) -> Callable[[Path], str]:
    def make(_folder: Path) -> str:
        assert old in TINY, old
        return TINY.replace(old, new, 1)

    return make


def _csv(folder: Path, drop: str | None = None, stray: str | None = None) -> Path:
    space = recipe_space()
    X = space.from_unit(space.sample_unit(np.random.default_rng(0), 30))
    frame = space.to_frame(X)
    frame["yield"] = recipe_yield(X)
    if drop:
        frame = frame.drop(columns=[drop])
    if stray:
        frame.loc[7, "catalyst"] = stray
    path = folder / "prior.csv"
    frame.to_csv(path, index=False)
    return path


def _with_data(**csv: str) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        path = _csv(folder, **csv)
        return TINY.replace("[initial]\nrandom = 30", f'[initial]\nrandom = 30\ndata = "{path.name}"', 1)

    return make


CASES = [
    (
        "unknown_type",
        _swap('type = "integer"', 'type = "ordinal"'),
        ("space.parameters.2.type: must be one of 'continuous', 'integer' or 'categorical' (got 'ordinal')",),
    ),
    (
        "empty_category_list",
        _swap('values = ["toluene", "dioxane", "DMF"]', "values = []"),
        ("space.parameters.1: categorical parameter 'solvent' has an empty category list",),
    ),
    (
        "bounds_reversed",
        _swap("lower = 25.0\nupper = 140.0", "lower = 140.0\nupper = 25.0"),
        ("space.parameters.3: parameter 'temperature': lower bound 140.0 is not below upper bound 25.0",),
    ),
    (
        "constraint_on_a_categorical",
        _swap("loading = 1.0, concentration", "catalyst = 1.0, concentration"),
        ("space.constraints.0: constraint 'reagent_budget': 'catalyst' is categorical",),
    ),
    ("csv_missing_a_parameter_column", _with_data(drop="loading"), ("initial.data:", "missing columns ['loading']")),
    (
        "category_not_in_the_list",
        _with_data(stray="Pt/C"),
        ("initial.data:", "column 'catalyst' has 1 values not among its categories", "'Pt/C' at row 7"),
    ),
    (
        "space_and_material",
        _swap('name = "tiny-space"', 'name = "tiny-space"\nmaterial = "mos2"'),
        ("space: a campaign declares its own [space] or names a registered material, not both",),
    ),
]


def test_the_tiny_space_campaign_is_valid() -> None:
    tomllib.loads(TINY)  # the base every case edits is a campaign file


@pytest.mark.parametrize(("make", "expected"), [(m, e) for _, m, e in CASES], ids=[c[0] for c in CASES])
def test_bad_space_is_one_line_and_writes_nothing(
    make: Callable[[Path], str], expected: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "campaign.toml"
    config.write_text(make(tmp_path), encoding="utf-8")
    code, err = run_tiny(capsys, config, tmp_path / "state")
    check_error(code, err, config.name, expected)
    assert "(1 problem)" in err or "invalid configuration" in err
    assert not (tmp_path / "state").exists()
