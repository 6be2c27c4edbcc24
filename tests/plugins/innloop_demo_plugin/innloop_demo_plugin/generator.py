"""The demo generator: innloop's conditional INN under a name of its own (its weight files say so)."""

from __future__ import annotations

from generators import CINN

__all__ = ["DemoCINN"]


class DemoCINN(CINN):
    """A cINN registered as ``demo_cinn``."""

    name = "demo_cinn"
