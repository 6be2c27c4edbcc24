"""The batch a campaign iteration sends to the oracle, as chosen and as saved.

`Batch` round-trips through ``batch.csv`` with the physical designs kept bit for bit, so
a resumed run submits exactly what the killed one chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agent.campaign.approval import Proposal
from agent.campaign.state import CampaignState

__all__ = ["Batch"]


@dataclass
class Batch:
    """What goes to the oracle: ``U (k, d)``, the target each serves and the model's forecast."""

    U: np.ndarray
    target: np.ndarray
    reason: list[str]
    pred: np.ndarray
    std: np.ndarray
    log_pf: np.ndarray
    X: np.ndarray | None = None  # physical designs exactly as submitted (read back from batch.csv)

    def physical(self, state: CampaignState) -> np.ndarray:
        return self.X if self.X is not None else state.space.from_unit(self.U)

    def frame(self, state: CampaignState) -> pd.DataFrame:
        df = state.space.to_frame(self.physical(state)) if len(self.U) else pd.DataFrame(columns=state.space.names)
        df["target_index"] = self.target
        # the target's value (a number, as it always was), or a range's label
        df["target"] = [_target_cell(state, t) for t in self.target]
        df["reason"] = self.reason
        df["pred"], df["pred_std"], df["log_pf"] = self.pred, self.std, self.log_pf
        return df

    def proposal(self, state: CampaignState, asked_at: float, link: str | None = None) -> Proposal:
        """The batch as a person is asked to approve it (`agent.campaign.approval`)."""
        space = state.space
        rows = [
            r | {"target": _target_cell(state, t), "pred": float(mu), "std": float(sd), "reason": why}
            for r, t, mu, sd, why in zip(
                space.to_rows(self.physical(state)), self.target, self.pred, self.std, self.reason
            )
        ]
        return Proposal(
            state.config.name, state.iteration, asked_at, state.target_name, space.names, space.units, rows, link
        )

    @classmethod
    def read(cls, path: Path, state: CampaignState) -> Batch:
        df = pd.read_csv(path)  # category names that would not read back as text are refused at load
        X = state.space.from_frame(df, source=str(path))
        return cls(
            state.space.to_unit(X),
            df["target_index"].to_numpy(int),
            [str(r) for r in df["reason"]],
            df["pred"].to_numpy(float),
            df["pred_std"].to_numpy(float),
            df["log_pf"].to_numpy(float),
            X,
        )


def _target_cell(state: CampaignState, index: int) -> float | str:
    if index < 0:
        return np.nan
    target = state.config.targets[index]
    return target.value if target.value is not None else target.range.label()
