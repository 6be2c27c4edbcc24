"""A material's observations: its bundled dataset and the CSV files users bring.

Reading needs the material (its space, target and bound) and the table needs neither, so
these readers live with the materials, above `agent.core.observations`.
"""

from __future__ import annotations

from importlib import resources
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import IO

import numpy as np
import pandas as pd

from agent.core.errors import DataError, UnknownNameError
from agent.core.materials.base import Material, get_material
from agent.core.observations import Observations, read_csv_table, validate_frame

__all__ = ["available_datasets", "dataset_material", "load_dataset", "read_designs", "read_observations"]

# Bundled datasets: name -> (folder inside agent/data, CSV file, material name).
_DATASETS = MappingProxyType(
    {
        "mos2": ("mos2", "mos2_pbe_bandgaps.csv", "mos2"),
        "ws2": ("ws2", "ws2_gpaw_table.csv", "ws2"),  # GPAW, made here: scripts/measure_ws2_table.py
    }
)


def _from_csv(handle: IO[bytes] | Path, material: Material, source: str) -> Observations:
    frame = read_csv_table(handle, source)
    return Observations(material.space, frame, material.target, source, lower_bound=material.target_lower_bound)


def available_datasets() -> list[str]:
    """The names `load_dataset` knows."""
    return sorted(_DATASETS)


def dataset_material(name: str) -> Material:
    """The material a bundled dataset measures (its space and property), without reading it."""
    if name not in _DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; bundled datasets: {', '.join(available_datasets())}")
    return get_material(_DATASETS[name][2])


def load_dataset(name: str = "mos2") -> Observations:
    """Load a bundled dataset from the installed package (independent of the working dir)."""
    if name not in _DATASETS:
        known = ", ".join(sorted(_DATASETS))
        raise UnknownNameError(f"unknown dataset {name!r}; bundled datasets: {known}")
    folder, filename, material_name = _DATASETS[name]
    ref = resources.files("agent").joinpath("data").joinpath(folder).joinpath(filename)
    source = f"bundled dataset {name!r} (agent/data/{folder}/{filename})"
    if not ref.is_file():
        raise DataError(f"{source} is missing from the installed package")
    with ref.open("rb") as handle:
        return _from_csv(handle, get_material(material_name), source)


def _user_csv(path: str | PathLike[str], kind: str) -> tuple[pd.DataFrame, str]:
    """A user's CSV file read as a table, or one `DataError` naming it (``kind``: what it holds)."""
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a CSV file" if p.is_dir() else "does not exist"
        raise DataError(f"{kind} file {str(p)!r} {what}")
    try:
        return read_csv_table(p, str(p)), str(p)
    except OSError as exc:
        raise DataError(f"{kind} file {str(p)!r} cannot be read ({exc})") from exc


def read_observations(path: str | PathLike[str], material: Material | str) -> Observations:
    """Read a user CSV whose columns are ``material``'s parameters and target."""
    mat = get_material(material) if isinstance(material, str) else material
    frame, source = _user_csv(path, "observations")
    return Observations(mat.space, frame, mat.target, source, lower_bound=mat.target_lower_bound)


def read_designs(path: str | PathLike[str], material: Material | str) -> np.ndarray:
    """Read a CSV of designs without values (physical units), each inside ``material``'s space.

    Checked as fully as `read_observations`, so a campaign refuses a bad initial set before
    it creates any state, not halfway through its first iteration.
    """
    mat = get_material(material) if isinstance(material, str) else material
    frame, source = _user_csv(path, "designs")
    X, _ = validate_frame(mat.space, frame, None, source, None)
    return X
