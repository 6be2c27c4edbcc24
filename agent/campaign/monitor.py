"""What a running campaign tells whoever watches it: stages, oracle jobs, iterations, messages.

The loop never draws on the console itself. Progress bars written by the training loop,
the localizer and the job driver each wrote their own lines and garbled one another and
Prefect's log records; instead every stage reports to one `Monitor`, and one view owns the
console (the command line's live display, a plain line per iteration, or nothing). Every
method has a do-nothing default, so a view overrides only what it shows and the loop never
has to ask what a monitor can do.

A Prefect flow cannot take a live object as a parameter (parameters are sent to its API),
so the command line installs its view with `watching` and the campaign picks it up with
`current`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the state module loads numpy and scipy; a monitor only reads its fields
    from agent.campaign.state import CampaignState

__all__ = ["Monitor", "current", "watching"]


class Monitor:
    """The campaign's progress, event by event; the base class shows nothing."""

    def started(self, state: CampaignState) -> None:
        """The run opened its campaign (``state`` is what the ledger and checkpoints hold)."""

    def stage(self, state: CampaignState, name: str) -> None:
        """Stage ``name`` of iteration ``state.iteration`` begins (retrain, sample, … checkpoint)."""

    def jobs(self, done: int, in_flight: int, failed: int) -> None:
        """The current batch at the oracle: results recorded so far, jobs out, failed results."""

    def iteration(self, state: CampaignState) -> None:
        """An iteration was committed; ``state.history[-1]`` holds its metrics."""

    def message(self, text: str) -> None:
        """A line worth a person's attention (resuming, an oracle outage, a retry)."""


_current: Monitor = Monitor()


def current() -> Monitor:
    """The monitor installed by `watching`, or one that shows nothing."""
    return _current


@contextmanager
def watching(monitor: Monitor) -> Iterator[Monitor]:
    """Install ``monitor`` for campaigns run inside the block (restored afterwards)."""
    global _current
    previous, _current = _current, monitor
    try:
        yield monitor
    finally:
        _current = previous
