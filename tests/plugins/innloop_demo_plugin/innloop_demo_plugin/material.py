"""The demo material: a blend recipe whose score the demo oracle computes in closed form."""

from __future__ import annotations

import numpy as np

from agent.core.materials import Material
from agent.core.space import DesignSpace, Parameter

__all__ = ["demo_blend", "score"]


def score(X: np.ndarray) -> np.ndarray:
    """The recipe's score in [0, 1] for physical designs ``(n, 3)``: temperature (K), ratio, time (h)."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    temperature, ratio, hours = X[:, 0], X[:, 1], X[:, 2]
    return np.exp(-(((temperature - 400.0) / 90.0) ** 2)) * np.sin(np.pi * ratio) * (1.0 - np.exp(-hours / 3.0))


def demo_blend() -> Material:
    """The material (the entry point names this factory; innloop calls it once)."""
    space = DesignSpace(
        "demo_blend",
        (
            Parameter("temperature", 300.0, 500.0, "K"),
            Parameter("ratio", 0.05, 0.95, ""),
            Parameter("hours", 0.5, 12.0, "h"),
        ),
    )
    return Material(
        name="demo_blend",
        description="A demo blend recipe (innloop-demo-plugin): score in [0, 1], no crystal structure",
        space=space,
        target="score",
        target_unit="",
        target_lower_bound=0.0,
        build=None,
    )
