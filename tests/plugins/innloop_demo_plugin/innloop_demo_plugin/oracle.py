"""The demo oracle: measures a design of a material by the demo's closed-form `score`.

Every job completes at once and a result is a pure function of the design, so the handles
alone carry everything (a resumed campaign re-reads them in another process).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.core.materials import Material, as_material
from oracles.base import Handle, JobStatus, OracleError, Result, check_own, designs_to_rows

from .material import score

__all__ = ["FormulaOracle"]


class FormulaOracle:
    """Closed-form measurements of ``material`` (a name or a `Material`; the campaign passes its own)."""

    name = "demo_formula"  # a submit keeps nothing at the back end: one that raised left nothing behind

    def __init__(self, material: str | Material = "demo_blend", offset: float = 0.0) -> None:
        self.material = as_material(material)
        if self.material.space.names != ["temperature", "ratio", "hours"]:
            raise OracleError(f"the demo formula measures demo_blend designs, not {self.material.name!r}")
        self.space = self.material.space
        self.offset = float(offset)

    def submit(self, designs: Any) -> list[Handle]:
        now = time.time()
        rows = designs_to_rows(self.space, designs)
        return [Handle(self.name, uuid.uuid4().hex, row, submitted_at=now) for row in rows]

    def poll(self, handles: Sequence[Handle]) -> list[JobStatus]:
        check_own(self.name, handles)
        return [JobStatus.COMPLETED for _ in handles]

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        check_own(self.name, handles)
        if not handles:
            return []
        X = np.array([[h.design[n] for n in self.space.names] for h in handles])
        values = score(X) + self.offset
        prov = {"oracle": self.name, "plugin": "innloop-demo-plugin", "formula": "score"}
        return [
            Result(h, JobStatus.COMPLETED, values={self.material.target: float(v)}, provenance=prov)
            for h, v in zip(handles, values, strict=True)
        ]

    def cancel(self, handles: Sequence[Handle]) -> None:
        check_own(self.name, handles)
