from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.core.errors import DataError, DesignError
from oracles import make_oracle
from oracles.base import JobStatus
from oracles.table import TableOracle


def test_pool_and_exact_replay_of_the_bundled_data() -> None:
    oracle = make_oracle("table")
    pool = oracle.pool()  # type: ignore[attr-defined]
    assert len(pool) == 8330 and "gap" not in pool.columns
    rows = pool.iloc[[0, 5, 100]]
    handles = oracle.submit(rows)
    assert oracle.poll(handles) == [JobStatus.COMPLETED] * 3
    results = oracle.results(handles)
    truth = oracle._obs.frame.iloc[[0, 5, 100]]["gap"].to_numpy()  # type: ignore[attr-defined]
    np.testing.assert_allclose([r.values["gap"] for r in results], truth)  # type: ignore[index]
    assert results[0].provenance["row"] == 0


def test_designs_not_in_the_table_are_refused_or_matched_within_tolerance() -> None:
    strict = TableOracle()
    x = strict.pool().iloc[[7]].to_numpy() + 0.001
    with pytest.raises(DesignError, match="no row within"):
        strict.submit(x)
    loose = TableOracle(tolerance=0.01)
    (h,) = loose.submit(x)
    assert h.native_id == "7"


def test_user_table_with_missing_columns(tmp_path: Path) -> None:
    bad = tmp_path / "mine.csv"
    bad.write_text("a,b,gap\n3.1,3.2,0.5\n")
    with pytest.raises(DataError, match=r"mine\.csv"):
        TableOracle(path=bad)


def test_every_other_numeric_column_comes_back_as_a_value(tmp_path: Path) -> None:
    from agent.core.materials import get_material

    space = get_material("mos2").space
    frame = space.to_frame(space.from_unit(space.sample_unit(np.random.default_rng(0), 3)))
    frame = frame.assign(gap=[0.5, 1.0, 1.5], strain_energy=[0.2, np.nan, 2.5], note=["x", "y", "z"], flag=True)
    path = tmp_path / "measured.csv"
    frame.to_csv(path, index=False, float_format="%.17g")
    oracle = TableOracle(path=path)
    assert oracle.value_names() == {"gap", "strain_energy"}, "text and true/false columns are no measurements"
    assert list(oracle.pool().columns) == space.names, "the pool shows designs only"
    results = oracle.results(oracle.submit(frame[space.names]))
    assert [r.values for r in results] == [
        {"gap": 0.5, "strain_energy": 0.2},
        {"gap": 1.0},  # an empty cell is no value, never a made-up one
        {"gap": 1.5, "strain_energy": 2.5},
    ]
    assert TableOracle().value_names() == {"gap"}, "the bundled data measure the gap only"
