"""Observation tables: loading, validation messages, duplicates and group-aware splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.core.errors import ConfigError, DataError, UnknownNameError
from agent.core.materials import get_material, load_dataset, read_observations
from agent.core.observations import Observations

COLUMNS = ["a", "b", "c", "alpha", "beta", "gamma", "efield", "gap"]


@pytest.fixture(scope="module")
def obs() -> Observations:
    return load_dataset("mos2")


def _small() -> pd.DataFrame:
    rows = [
        [3.16, 3.16, 12.3, 90, 90, 120, 0.0, 1.9],
        [3.20, 3.10, 12.0, 90, 90, 120, 0.5, 1.2],
        [3.16, 3.16, 12.3, 90, 90, 120, 0.0, 1.9],  # exact duplicate of row 0
        [3.00, 3.00, 11.0, 85, 95, 110, -0.5, 0.0],
        [3.20, 3.10, 12.0, 90, 90, 120, 0.5, 1.4],  # conflicts with row 1
    ]
    return pd.DataFrame(rows, columns=COLUMNS, dtype=float)


def _make(frame: pd.DataFrame) -> Observations:
    return Observations(get_material("mos2").space, frame, "gap", "toy.csv", lower_bound=0.0)


def test_load_dataset(obs: Observations) -> None:
    assert len(obs) == 8638
    assert list(obs.frame.columns) == COLUMNS
    assert obs.X.shape == (8638, 7) and obs.y.shape == (8638,) and obs.X.dtype == np.float64
    assert obs.U.min() >= 0.0 and obs.U.max() <= 1.0
    assert np.allclose(obs.space.from_unit(obs.U), obs.X)
    assert get_material("mos2").dataset is not None
    with pytest.raises(UnknownNameError, match="mos2"):
        load_dataset("nope")


def test_views_are_copies(obs: Observations) -> None:
    X, y, frame = obs.X, obs.y, obs.frame
    X[0, 0] = 99.0
    y[0] = -5.0
    frame.loc[0, "gap"] = -5.0
    assert obs.X[0, 0] != 99.0 and obs.y[0] >= 0.0 and float(obs.frame["gap"].iloc[0]) >= 0.0


def test_missing_columns() -> None:
    with pytest.raises(DataError, match=r"toy\.csv: missing columns \['efield'\]"):
        _make(_small().drop(columns="efield"))


def test_non_numeric_column() -> None:
    frame = _small().astype({"c": object})
    frame.loc[3, "c"] = "eleven"
    with pytest.raises(DataError, match=r"non-numeric columns \['c'\].*'eleven'.*row 3"):
        _make(frame)


def test_nan_is_located() -> None:
    frame = _small()
    frame.loc[[1, 3], "gamma"] = np.nan
    with pytest.raises(DataError) as info:
        _make(frame)
    msg = str(info.value)
    assert "toy.csv" in msg and "non-finite" in msg
    assert "column 'gamma' (2 rows, first row 1)" in msg


def test_out_of_bounds_rows() -> None:
    frame = _small()
    frame.loc[2, "a"] = 9.0
    frame.loc[4, "efield"] = 3.0
    with pytest.raises(DataError) as info:
        _make(frame)
    msg = str(info.value)
    assert "2 of 5 rows are outside the design space" in msg
    assert "row 2: a=9" in msg and "2 outside the bounds" in msg


def test_constraint_violation() -> None:
    frame = _small()
    frame.loc[0, ["c", "alpha", "beta", "gamma"]] = [14.7, 72.1, 72.1, 144.0]
    with pytest.raises(DataError, match=r"1 violating constraints.*layer_spacing"):
        _make(frame)


def test_negative_target() -> None:
    frame = _small()
    frame.loc[3, "gap"] = -0.1
    with pytest.raises(DataError, match=r"1 rows have 'gap' below .* lower bound 0; first, row 3"):
        _make(frame)
    assert len(Observations(get_material("mos2").space, frame)) == 5  # no bound, no check


def test_extra_columns_are_kept() -> None:
    frame = _small()
    frame["note"] = list("vwxyz")
    obs = _make(frame)
    assert obs.frame["note"].tolist() == list("vwxyz")
    assert obs.take([4, 0]).frame["note"].tolist() == ["z", "v"]


def test_duplicates_in_small_table() -> None:
    obs = _make(_small())
    g = obs.groups()
    assert g[0] == g[2] and g[1] == g[4] and len(set(g.tolist())) == 3
    rep = obs.duplicates_report()
    assert (rep.duplicate_rows, rep.conflicting_groups, rep.conflicting_rows) == (1, 1, 2)
    with pytest.raises(DataError, match=r"conflicting 'gap'.*a=3\.2.*rows \[1, 4\]"):
        obs.deduplicate("exact")
    with pytest.raises(DataError, match="2 rows repeat"):
        obs.deduplicate("error")
    mean = obs.deduplicate("mean")
    assert len(mean) == 3 and mean.y.tolist() == pytest.approx([1.9, 1.3, 0.0])
    with pytest.raises(ConfigError):
        obs.deduplicate("median")  # type: ignore[arg-type]


def test_duplicates_in_bundled_data(obs: Observations) -> None:
    rep = obs.duplicates_report()
    assert rep.rows == 8638 and rep.unique_inputs == 8330
    assert rep.duplicate_rows == 308 and rep.conflicting_groups == 0
    dedup = obs.deduplicate("exact")
    assert len(dedup) == 8330 and dedup.duplicates_report().duplicate_rows == 0


def _keys(o: Observations) -> set[bytes]:
    return {row.tobytes() for row in o.X}


def test_split_is_group_aware_and_seeded(obs: Observations) -> None:
    train, test = obs.split(0.2, seed=0)
    assert len(train) + len(test) == len(obs)
    assert abs(len(test) - 0.2 * len(obs)) <= 2
    assert not _keys(train) & _keys(test)
    again = obs.split(0.2, seed=0)[1]
    assert np.array_equal(again.X, test.X)
    other = obs.split(0.2, seed=1)[1]
    assert not np.array_equal(other.X, test.X)
    with pytest.raises(ConfigError):
        obs.split(1.0)


def test_split_groups_partitions(obs: Observations) -> None:
    parts = obs.split_groups(4, seed=3)
    assert sum(len(p) for p in parts) == len(obs)
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 2
    keys = [_keys(p) for p in parts]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not keys[i] & keys[j]
    with pytest.raises(ConfigError):
        obs.split_groups(0)


def test_read_observations(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    _small().to_csv(path, index=False)
    assert len(read_observations(path, "mos2")) == 5
    with pytest.raises(DataError, match=r"missing\.csv.*does not exist"):
        read_observations(tmp_path / "missing.csv", "mos2")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage\x00\n\x00")
    with pytest.raises(DataError, match=r"bad\.csv"):
        read_observations(bad, get_material("mos2"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="not a readable CSV"):
        read_observations(empty, "mos2")
