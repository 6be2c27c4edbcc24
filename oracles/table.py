"""Replay real measurements from a table: pool-based active learning on real labels.

The bundled MoS2 VASP data is the default table; any CSV with the material's design
columns and target works. A design is answered from the nearest table row when that row
lies within ``tolerance`` (unit-box distance); anything farther is refused, because
inventing a label would silently corrupt a campaign. Every other numeric column of the
table (a strain energy, a cost) comes back as a value of its own, so a campaign can bound
it (``[[constraints]]``); an empty cell is no value, never a guessed one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from agent.core.errors import DesignError
from agent.core.materials import Material, as_material, read_observations
from agent.core.observations import Observations
from oracles.base import (
    Handle,
    JobStatus,
    OracleError,
    OracleRefused,
    Result,
    absolute_path,
    check_own,
    designs_to_rows,
    resolve_path_settings,
)

__all__ = ["TableOracle"]


class TableOracle:
    """Answers designs from a table of measured rows; everything completes at once."""

    name = "table"
    idempotent_submit = True  # answers are free and instant: re-sending a batch costs nothing

    def __init__(
        self, path: str | Path | None = None, material: str | Material = "mos2", tolerance: float = 1e-6
    ) -> None:
        if not tolerance >= 0:
            raise OracleError(f"table oracle: tolerance must be >= 0, got {tolerance}")
        mat = as_material(material)
        self.space = mat.space
        self.tolerance = float(tolerance)
        if path is None:
            if mat.dataset is None:
                raise OracleError(f"material {mat.name!r} ships no table; give the table oracle a path")
            obs: Observations = mat.dataset()
            self.source = f"bundled:{mat.name}"
        else:
            path = absolute_path(path)
            obs = read_observations(path, mat)
            self.source = str(path)
        self._obs = obs.deduplicate("exact")
        self._U = self._obs.U
        self._y = self._obs.y
        self._tree = cKDTree(self._U)
        self.target = self._obs.target
        self._extra = _extra_columns(self._obs, self.space.names)

    @staticmethod
    def resolve_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]:
        """Settings with ``path`` absolute against ``base`` (a campaign file's folder)."""
        return resolve_path_settings(settings, ("path",), base)

    def value_names(self) -> frozenset[str]:
        """The target and every other numeric column of the table (`oracles.base.NamesValues`)."""
        return frozenset({self.target, *self._extra})

    def pool(self) -> pd.DataFrame:
        """The table's designs without their labels: what pool-based active learning picks from."""
        return self.space.to_frame(self._obs.X)

    def submit(self, designs: Any) -> list[Handle]:
        rows = designs_to_rows(self.space, designs)
        U = self.space.to_unit(self.space.from_rows(rows))
        dist, idx = self._tree.query(U)
        far = np.flatnonzero(dist > self.tolerance)
        if len(far):
            i = int(far[0])
            raise DesignError(
                f"table oracle ({self.source}) has no row within {self.tolerance:g} of design {i} "
                f"{rows[i]} (nearest is {dist[i]:.3g} away in the unit box); {len(far)} of {len(rows)} refused"
            )
        now = time.time()
        return [
            Handle(self.name, uuid.uuid4().hex, row, native_id=str(int(j)), workdir=None, submitted_at=now)
            for row, j in zip(rows, idx, strict=True)
        ]

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        check_own(self.name, handles)
        return [JobStatus.COMPLETED for _ in handles]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        check_own(self.name, handles)
        out = []
        for h in handles:
            row = int(h.native_id) if h.native_id is not None else -1
            if not 0 <= row < len(self._y):
                raise OracleRefused(f"handle {h.job_id!r} points at row {h.native_id!r}, not in {self.source}")
            out.append(
                Result(
                    h,
                    JobStatus.COMPLETED,
                    values={self.target: float(self._y[row])} | self._extras(row),
                    provenance={"oracle": self.name, "source": self.source, "row": row},
                )
            )
        return out

    def _extras(self, row: int) -> dict[str, float]:
        """The row's other measured values (an empty cell: no value, never a made-up one)."""
        return {k: float(v[row]) for k, v in self._extra.items() if np.isfinite(v[row])}

    def cancel(self, handles: Sequence[Handle]) -> None:
        check_own(self.name, handles)


def _extra_columns(obs: Observations, design: Sequence[str]) -> dict[str, np.ndarray]:
    """The table's numeric columns besides the design and the target, by name (float64, NaN
    for an empty cell): values such as a strain energy that a campaign may bound."""
    frame = obs.frame
    out = {}
    for col in frame.columns:
        if col in design or col == obs.target or not isinstance(col, str):
            continue
        if pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]):
            out[col] = frame[col].to_numpy(dtype=np.float64)
    return out
