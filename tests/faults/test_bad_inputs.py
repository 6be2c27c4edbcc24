"""A corpus of bad inputs: each must end as one clear error, exit code 2, and no damage.

Three tables, one per kind of input a user hands `innloop run`:

- configs (the campaign TOML): unknown keys, wrong types, values outside their bounds,
  targets outside the data's range, zero or negative budgets, unknown names;
- data files (``[initial] data`` and ``designs``): missing columns, NaN, units off by
  100x, duplicate rows with conflicting values, files that are not CSV at all;
- state (a campaign folder being resumed): truncated JSON, checksum mismatches, weight
  files that are not what they claim, a folder started by another campaign.

Every case asserts: exit code 2, stderr starting with ``innloop: error: `` and naming the
offending file and the problem, no traceback, and nothing written: a config or data
mistake must not even create the state folder, and a state mistake must leave every
file of the folder byte for byte as it was (and add none).

The state holds JSON, JSON lines, CSV and torch weight files only (no parquet), so
"truncated parquet" has no counterpart here; truncated JSON, JSON lines, CSV and torch
files are covered instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.faults.corpus import DATA, TINY, check_error, run_tiny, snapshot, swap


# -- configs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigCase:
    id: str
    make: Callable[[Path], str | bytes]  # folder -> the config file's content
    expected: tuple[str, ...]


def _toml(old: str, new: str) -> Callable[[Path], str]:
    return lambda _folder: swap(TINY, old, new)


def _data_toml(line: str) -> Callable[[Path], str]:
    return lambda _folder: swap(TINY, "random = 12", f"random = 12\n{line}")


CONFIG_CASES = [
    ConfigCase("unknown_top_level_key", _toml("seed = 1", 'seed = 1\ncolour = "red"'), ("colour: unknown key",)),
    ConfigCase(
        "misspelt_key",
        _toml("batch_size = 4", "batch_sise = 4"),
        ("loop.batch_sise: unknown key (did you mean 'batch_size'?)",),
    ),
    ConfigCase("misspelt_section", _toml("[models]", "[modles]"), ("modles: unknown key (did you mean 'models'?)",)),
    ConfigCase(
        "string_for_integer", _toml("batch_size = 4", 'batch_size = "4"'), ("loop.batch_size: must be an integer",)
    ),
    ConfigCase("string_for_bool", _toml("enabled = false", 'enabled = "no"'), ("ray.enabled: must be true or false",)),
    ConfigCase(
        "number_for_table",
        lambda _f: swap(swap(TINY, "[budget]\niterations = 2\n", ""), "seed = 1", "seed = 1\nbudget = 2"),
        ("budget: must be a table",),
    ),
    ConfigCase("nan_target", _toml("value = 1.0", "value = nan"), ("targets.0.value: must be a finite number",)),
    ConfigCase("missing_name", _toml('name = "tiny"\n', ""), ("name: required key is missing",)),
    ConfigCase("name_is_a_path", _toml('name = "tiny"', 'name = "../tiny"'), ("name: must be 1-64 letters",)),
    ConfigCase(
        "no_targets", _toml("[[targets]]\nvalue = 1.0\nhits = 30\n", "targets = []\n"), ("targets: must not be empty",)
    ),
    ConfigCase(
        "target_above_data",
        _toml("value = 1.0", "value = 7.5"),
        ("targets.0.value: outside the mos2 data's gap range",),
    ),
    ConfigCase(
        "target_below_data",
        _toml("value = 1.0", "value = -0.5"),
        ("targets.0.value: outside the mos2 data's gap range",),
    ),
    ConfigCase("zero_window", _toml("hits = 30", "hits = 30\nwindow = 0.0"), ("targets.0.window: must be > 0",)),
    ConfigCase("negative_window", _toml("hits = 30", "hits = 30\nwindow = -0.1"), ("targets.0.window: must be > 0",)),
    ConfigCase(
        "window_wider_than_data", _toml("hits = 30", "hits = 30\nwindow = 50.0"), ("targets.0.window: must be smaller",)
    ),
    ConfigCase("zero_hits", _toml("hits = 30", "hits = 0"), ("targets.0.hits: must be >= 1",)),
    ConfigCase("zero_iterations", _toml("iterations = 2", "iterations = 0"), ("budget.iterations: must be >= 1",)),
    ConfigCase(
        "negative_oracle_calls", _toml("iterations = 2", "oracle_calls = -10"), ("budget.oracle_calls: must be >= 1",)
    ),
    ConfigCase(
        "zero_wall_time",
        _toml("iterations = 2", "iterations = 2\nwall_time_s = 0"),
        ("budget.wall_time_s: must be > 0",),
    ),
    ConfigCase("zero_batch", _toml("batch_size = 4", "batch_size = 0"), ("loop.batch_size: must be >= 1",)),
    # the config has no (lower, upper) pairs; these are its bounded values, crossed
    ConfigCase(
        "exploration_above_one",
        _toml("batch_size = 4", "batch_size = 4\nexploration = 1.5"),
        ("loop.exploration: must be <= 1",),
    ),
    ConfigCase(
        "cpus_above_one",
        _toml("enabled = false", "enabled = false\ncpus_per_actor = 2.0"),
        ("ray.cpus_per_actor: must be <= 1",),
    ),
    ConfigCase("one_member_ensemble", _toml("members = 2", "members = 1"), ("models.members: must be >= 2",)),
    ConfigCase(
        "unknown_oracle",
        _toml("[initial]", '[oracle]\nname = "vaps"\n[initial]'),
        ("oracle.name: unknown oracle (did you mean 'vasp'?)",),
    ),
    ConfigCase(
        "unknown_oracle_setting",
        _toml("[initial]", "[oracle.settings]\nlatnecy_s = 1.0\n[initial]"),
        ("oracle.settings.latnecy_s: unknown setting of the mock oracle (did you mean 'latency_s'?)",),
    ),
    pytest.param(
        ConfigCase(
            "bad_oracle_setting_value",
            _toml("[initial]", "[oracle.settings]\nfailure_rate = 2.0\n[initial]"),
            ("failure_rate in [0, 1]",),
        ),
        id="bad_oracle_setting_value",
    ),
    ConfigCase(
        "unknown_generator",
        _toml("members = 2", 'members = 2\ngenerator = "cinnn"'),
        ("models.generator: unknown generator",),
    ),
    ConfigCase("unknown_material", _toml("seed = 1", 'seed = 1\nmaterial = "mos3"'), ("material: unknown material",)),
    ConfigCase("not_toml", _toml("[loop]", "[loop"), ("is not valid TOML",)),
    ConfigCase("not_utf8", lambda _f: b'name = "tiny\xff"\n', ("is not UTF-8 text",)),
    ConfigCase("missing_prior_data", _data_toml('data = "nowhere.csv"'), ("initial.data: no such file", "nowhere.csv")),
    ConfigCase("prior_data_is_a_folder", _data_toml('data = "."'), ("initial.data: not a regular file",)),
]


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.id if isinstance(c, ConfigCase) else None)
def test_bad_config(case: ConfigCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "campaign.toml"
    content = case.make(tmp_path)
    config.write_bytes(content.encode() if isinstance(content, str) else content)
    before = snapshot(tmp_path)
    code, err = run_tiny(capsys, config, tmp_path / "state")
    check_error(code, err, config, case.expected)
    assert snapshot(tmp_path) == before, "a bad config wrote something"


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_tiny(capsys, tmp_path / "nope.toml", tmp_path / "state")
    check_error(code, err, tmp_path / "nope.toml", ("cannot read config file",))
    assert not (tmp_path / "state").exists()


# -- data files ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataCase:
    id: str
    key: str  # "data" (observations with values) or "designs" (designs alone)
    make: Callable[[pd.DataFrame, Path], object]  # (20 good rows, path) -> writes the bad file
    expected: tuple[str, ...]


def _frame(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[pd.DataFrame, Path], object]:
    return lambda good, path: edit(good.copy()).to_csv(path, index=False)


def _bytes(content: bytes) -> Callable[[pd.DataFrame, Path], object]:
    return lambda _good, path: path.write_bytes(content)


def _set(row: int, col: str, value: float | str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return edit


def _in_pm(df: pd.DataFrame) -> pd.DataFrame:
    df[["a", "b", "c"]] *= 100.0  # lattice constants in pm, not Å
    return df


def _conflicting_repeat(df: pd.DataFrame) -> pd.DataFrame:
    twin = df.iloc[[3]].assign(gap=df["gap"].iloc[3] + 0.7)
    return pd.concat([df, twin], ignore_index=True)


def _bad_cell(df: pd.DataFrame) -> pd.DataFrame:
    # each value inside its bounds, together a cell too flat to leave vacuum between the layers
    df.loc[0, ["c", "alpha", "beta", "gamma"]] = [10.0, 72.0, 72.0, 143.9]
    return df


DATA_CASES = [
    DataCase("missing_column", "data", _frame(lambda df: df.drop(columns=["efield"])), ("missing columns ['efield']",)),
    DataCase(
        "missing_target_column", "data", _frame(lambda df: df.drop(columns=["gap"])), ("missing columns ['gap']",)
    ),
    DataCase("nan_value", "data", _frame(_set(5, "gap", np.nan)), ("non-finite values", "column 'gap'")),
    DataCase("non_numeric_value", "data", _frame(_set(2, "c", "12.3x")), ("non-numeric columns ['c']", "'12.3x'")),
    DataCase("units_off_by_100", "data", _frame(_in_pm), ("outside the design space", "a=314.178 Å is outside")),
    DataCase("field_out_of_bounds", "data", _frame(_set(7, "efield", 3.0)), ("row 7: efield=3 V/Å is outside",)),
    DataCase("impossible_cell", "data", _frame(_bad_cell), ("1 violating constraints", "row 0: layer_spacing")),
    DataCase("negative_gap", "data", _frame(_set(4, "gap", -0.3)), ("below its physical lower bound",)),
    DataCase(
        "conflicting_duplicates", "data", _frame(_conflicting_repeat), ("conflicting 'gap' values", "rows [3, 20]")
    ),
    DataCase(
        "duplicate_column",
        "data",
        lambda good, path: path.write_text("a,a,b\n1,2,3\n"),
        ("duplicate column names ['a']",),
    ),
    DataCase("empty_file", "data", _bytes(b""), ("not a readable CSV table",)),
    DataCase("header_only", "data", _frame(lambda df: df.iloc[:0]), ("the table has no rows",)),
    DataCase(
        "binary_not_csv", "data", _bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"), ("not a readable CSV table",)
    ),
    DataCase("json_not_csv", "data", _bytes(b'{"a": [3.1], "gap": [1.0]}\n'), ("missing columns",)),
    DataCase(
        "designs_missing_column",
        "designs",
        _frame(lambda df: df.drop(columns=["gap", "beta"])),
        ("missing columns ['beta']",),
    ),
    DataCase(
        "designs_in_pm", "designs", _frame(lambda df: _in_pm(df.drop(columns=["gap"]))), ("a=314.178 Å is outside",)
    ),
    DataCase("designs_with_nan", "designs", _frame(_set(1, "alpha", np.nan)), ("non-finite values", "column 'alpha'")),
    DataCase("designs_empty", "designs", _bytes(b""), ("not a readable CSV table",)),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_bad_data_file(case: DataCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "prior.csv"
    case.make(pd.read_csv(DATA).head(20), csv)
    config = tmp_path / "campaign.toml"
    config.write_text(swap(TINY, "random = 12", f'random = 12\n{case.key} = "prior.csv"'))
    before = snapshot(tmp_path)
    code, err = run_tiny(capsys, config, tmp_path / "state")
    check_error(code, err, csv, (f"initial.{case.key}", *case.expected))
    assert snapshot(tmp_path) == before, "a bad data file made the campaign write something"


def test_good_data_file_is_accepted(tmp_path: Path) -> None:
    """The corpus's baseline: the 20 rows every data case spoils are themselves fine."""
    from agent.campaign.config import load_config

    pd.read_csv(DATA).head(20).to_csv(tmp_path / "prior.csv", index=False)
    pd.read_csv(DATA).head(5).drop(columns=["gap"]).to_csv(tmp_path / "designs.csv", index=False)
    config = tmp_path / "campaign.toml"
    config.write_text(swap(TINY, "random = 12", 'random = 12\ndata = "prior.csv"\ndesigns = "designs.csv"'))
    assert load_config(config).initial.data == str(tmp_path / "prior.csv")
