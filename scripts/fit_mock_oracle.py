"""Reproduce the mock oracle's emulator weights: ``python scripts/fit_mock_oracle.py``.

A small two-member ensemble fitted to every bundled MoS2 row (duplicates dropped), no
calibration split; the mock answers with the members' mean gap. Fitted with the
surrogate (`agent.models.surrogate`, torch), written as the plain arrays the mock's
numpy evaluator reads (`oracles.emulator`), so the oracle itself needs no torch.
Seeded: running it again rewrites the same file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from agent.core.materials import get_material
from agent.design.trained import training_data
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from oracles.emulator import Emulator

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "oracles" / "data" / "mock_mos2.npz"


def to_emulator(model: SurrogateEnsemble) -> Emulator:
    """The ensemble's weights as an `Emulator` (float32 arrays, exactly the fitted values).

    The emulator has no ``sigma_scale``: the mock answers with the members' mean, which
    the calibration of the spread does not change.
    """
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    layers = len(model.net.weights)
    return Emulator(
        state["x_mean"],
        state["x_std"],
        tuple(state[f"net.weights.{i}"] for i in range(layers)),
        tuple(state[f"net.biases.{i}"] for i in range(layers)),
    )


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
    to_emulator(model).save(args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes) after {summary.epochs} epochs, loss {summary.final_loss:.4f}")


if __name__ == "__main__":
    main()
