"""The acceptance figure for switching pairs: 0 -> 1.0 eV switches on the bundled data.

Run ``python -m agent.insight.demo`` (``--quick`` for a smaller surrogate). Protocol,
chosen so that the oracle grades the surrogate on rows it never saw:

1. the bundled MoS2 table (exact duplicates dropped) is split by design group, 80/20;
2. a small deep ensemble is trained on the 80 %;
3. both candidate sets are held-out rows the surrogate puts in a window (±0.1 eV of
   0 eV and of 1.0 eV): held-out rows, because the table oracle answers only designs
   that are rows of its table;
4. the ``top`` smallest pairs (unit-box distance, each row used once) are ranked and
   sent to `oracles.table.TableOracle`, which returns the rows' VASP gaps.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agent.core.materials import get_material
from agent.design.trained import training_data
from agent.insight.transitions import SwitchingReport, switching_report
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from oracles.table import TableOracle

__all__ = ["DemoResult", "format_demo", "main", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    report: SwitchingReport
    train_rows: int
    held_out_rows: int
    seconds_train: float
    seconds_report: float


def run_demo(
    *,
    targets: tuple[float, float] = (0.0, 1.0),
    window: float = 0.1,
    top: int = 20,
    test_fraction: float = 0.2,
    seed: int = 0,
    surrogate: EnsembleConfig | None = None,
) -> DemoResult:
    """Train, pair and confirm as in the module docstring; deterministic for a ``seed``."""
    material = get_material("mos2")
    train, test = training_data(material).split(test_fraction, seed=seed)
    cfg = surrogate or EnsembleConfig(members=4, hidden=128, layers=3, epochs=100, seed=seed)
    t0 = time.perf_counter()
    model = SurrogateEnsemble(material.space.dim, cfg)
    model.fit(train.U, train.y, train.groups())
    t1 = time.perf_counter()
    held_out = material.space.to_frame(test.X)
    report = switching_report(
        held_out,
        held_out,
        space=material.space,
        model=model,
        targets=targets,
        windows=window,
        top=top,
        material=material.name,
        oracle=TableOracle(material=material.name),
        target_name=material.target,
        poll_interval=0.001,
    )
    return DemoResult(report, len(train), len(test), t1 - t0, time.perf_counter() - t1)


def format_demo(result: DemoResult, show: int = 5) -> str:
    """The summary line and the first ``show`` pairs as a plain-text table."""
    s = result.report.summary
    t = result.report.table
    lines = [
        f"surrogate trained on {result.train_rows} rows in {result.seconds_train:.1f} s; "
        f"{result.held_out_rows} held-out rows, of which in window: "
        f"{s['in_window'][0]} at {s['targets'][0]:g} eV, {s['in_window'][1]} at {s['targets'][1]:g} eV",
        f"top {s['pairs']} pairs: {s['verified']} verified by the surrogate, "
        f"{s['confirmed']} of {s['confirm_attempted']} confirmed by the table oracle "
        f"(pairing and confirmation {result.seconds_report:.2f} s)",
        "",
    ]
    cols = ["rank", "distance", "change", "pred_0", "measured_0", "pred_1", "measured_1", "confirmed"]
    view = t.loc[: show - 1, cols].copy()
    for c in ("distance", "pred_0", "measured_0", "pred_1", "measured_1"):
        view[c] = view[c].map(lambda v: f"{v:.3f}")
    lines.append(view.to_string(index=False))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--show", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smaller surrogate (a few seconds)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = EnsembleConfig(members=3, hidden=64, layers=2, epochs=40, seed=args.seed) if args.quick else None
    print(format_demo(run_demo(top=args.top, seed=args.seed, surrogate=cfg), show=args.show))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
