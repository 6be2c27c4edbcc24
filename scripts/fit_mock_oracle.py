"""Reproduce the mock oracle's emulator weights: ``python scripts/fit_mock_oracle.py``.

A small two-member ensemble fitted to every bundled MoS2 row (duplicates dropped), no
calibration split; the mock answers with the members' mean gap. Seeded: running it again
rewrites the same file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from agent.core.materials import get_material
from agent.design.trained import training_data
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "oracles" / "data" / "mock_mos2.pt"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--epochs", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    obs = training_data(get_material("mos2"))
    cfg = EnsembleConfig(members=2, hidden=64, layers=2, epochs=args.epochs, calibration_fraction=0.0, seed=0)
    model = SurrogateEnsemble(obs.U.shape[1], cfg)
    summary = model.fit(obs.U, obs.y, obs.groups())
    model.save(args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes) after {summary.epochs} epochs, loss {summary.final_loss:.4f}")


if __name__ == "__main__":
    main()
