"""A mock oracle that counts its jobs live at once: what a test of ``max_in_flight`` reads.

A job is live from its submit until a terminal result for it has been read back; the
count is the oracle's own view, so it holds whatever the loop's bookkeeping says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oracles.base import Handle, Result
from oracles.mock import MockOracle

__all__ = ["CountingMock"]


class CountingMock(MockOracle):
    """`MockOracle` (same settings) that keeps ``live`` job ids and ``most``, the largest count seen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live: set[str] = set()
        self.most = 0

    def submit(self, designs: Any) -> list[Handle]:
        handles = super().submit(designs)
        self.live |= {h.job_id for h in handles}
        self.most = max(self.most, len(self.live))
        return handles

    def results(self, handles: Sequence[Handle]) -> list[Result]:
        out = super().results(handles)
        self.live -= {r.handle.job_id for r in out if r.status.terminal}
        return out
