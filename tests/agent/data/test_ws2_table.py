"""The shipped WS2 GPAW table: what the benchmark and the ``table`` oracle replay.

Every row must be a valid WS2 design with a physical answer, the settings beside it must be
the script's, and the README's figures must be this file's (it is re-shipped as it grows).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from agent.core.materials import get_material, load_dataset
from oracles.table import TableOracle

DATA = Path(__file__).resolve().parents[3] / "agent" / "data" / "ws2"


def _script() -> ModuleType:
    path = Path(__file__).resolve().parents[3] / "scripts" / "measure_ws2_table.py"
    spec = importlib.util.spec_from_file_location("measure_ws2_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_row_is_a_valid_ws2_design_with_a_physical_answer() -> None:
    obs = load_dataset("ws2")
    frame, space = obs.frame, get_material("ws2").space
    assert len(frame) >= 500 and obs.target == "gap"
    assert space.valid_mask(obs.X).all()
    assert (frame["gap"] >= 0).all() and frame["gap"].max() < 2.6  # unstrained WS2: 1.85 eV at these settings
    assert np.isfinite(frame[["strain_energy", "energy", "wall_s"]].to_numpy()).all()
    assert (frame["strain_energy"] > -0.1).all(), "no strained cell far below the unstrained one"
    assert np.allclose(frame["strain_energy"] - frame["energy"], (frame["strain_energy"] - frame["energy"]).iloc[0])
    assert json.loads((DATA / "settings.json").read_text())["settings"] == _script().TABLE_SETTINGS


def test_the_readme_is_the_one_the_script_writes_for_these_rows() -> None:
    """Shipped together: a table re-shipped without its README (or edited by hand) fails here."""
    frame = pd.read_csv(DATA / "ws2_gpaw_table.csv")
    failures = DATA / "failures.csv"
    failed = len(pd.read_csv(failures)) if failures.stat().st_size > 1 else 0
    text = (DATA / "README.md").read_text()
    assert text == _script().readme(frame, failed, len(frame) + failed)
    assert f"`ws2_gpaw_table.csv`: {len(frame):,} real" in text.replace("\n", " ")


@pytest.mark.parametrize("material", ["ws2"])
def test_the_table_oracle_replays_it_by_default(material: str) -> None:
    oracle = TableOracle(material=material)
    assert oracle.source == "bundled:ws2"
    assert oracle.value_names() == {"gap", "strain_energy", "energy", "wall_s"}
    first = oracle.pool().iloc[:3]
    got = oracle.results(oracle.submit(first))
    frame = pd.read_csv(DATA / "ws2_gpaw_table.csv")
    assert [r.values["gap"] for r in got if r.values] == pytest.approx(frame["gap"].iloc[:3].tolist())
