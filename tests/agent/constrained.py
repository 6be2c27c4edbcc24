"""A tiny MoS2 table with a strain energy, and a campaign limited on it (``[[constraints]]``).

Shared by the campaign, status and report tests. The table's gap rises with the first
unit-box coordinate and its strain energy with the second, so about half of the rows
inside the target window are over the limit; two in-window rows have no strain energy at
all. The first batch measures those infeasible in-window rows on purpose
(``[initial] designs``, with ten other rows of the table), so every run has measurements that an unconstrained campaign
would have counted as hits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from agent.core.materials import get_material

SPACE = get_material("mos2").space
LIMIT = 1.5  # eV per formula unit
WINDOW = (0.9, 1.1)  # target 1.0 ± 0.1


def table(rows: int = 160, seed: int = 0) -> pd.DataFrame:
    """Design columns of ``mos2``, ``gap`` and ``strain_energy`` (empty in two in-window rows)."""
    U = SPACE.sample_unit(np.random.default_rng(seed), rows)
    frame = SPACE.to_frame(SPACE.from_unit(U))
    frame["gap"] = 2.0 * U[:, 0] + 0.02 * U[:, 2]
    frame["strain_energy"] = 3.0 * U[:, 1]
    inside = np.flatnonzero((frame["gap"] >= WINDOW[0]) & (frame["gap"] <= WINDOW[1]))
    frame.loc[inside[:2], "strain_energy"] = np.nan
    return frame


def in_window_infeasible(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows inside the window that no hit may be: over the limit, or without a strain energy."""
    inside = frame["gap"].between(*WINDOW)
    return frame[inside & ~(frame["strain_energy"] <= LIMIT)]


def campaign_text(folder: Path, name: str = "limited") -> str:
    """The campaign file, its table and its initial designs written into ``folder``."""
    frame = table()
    frame.to_csv(folder / "table.csv", index=False, float_format="%.17g")
    barred = in_window_infeasible(frame).head(5)
    others = frame.drop(index=barred.index).sample(10, random_state=0)  # the pool's rows: a table measures no other
    pd.concat([barred, others])[SPACE.names].to_csv(folder / "first.csv", index=False, float_format="%.17g")
    return f"""
name = "{name}"
seed = 2
[[targets]]
value = 1.0
window = 0.1
hits = 6
[[constraints]]
property = "strain_energy"
max = {LIMIT}
[oracle]
name = "table"
[oracle.settings]
path = "table.csv"
[initial]
random = 0
designs = "first.csv"
[loop]
batch_size = 6
min_distance = 0.05
samples_per_target = 200
[budget]
iterations = 4
[models]
members = 3
surrogate_epochs = 40
surrogate_warm_epochs = 10
generator_epochs = 20
generator_warm_epochs = 5
[ray]
enabled = false
[retry]
max_attempts = 1
poll_interval_s = 0.01
"""


def run(folder: Path) -> tuple[Path, str]:
    """Run the campaign in ``folder``; its state folder and name."""
    from agent.campaign.config import load_config
    from agent.campaign.runner import run_campaign

    text = campaign_text(folder)
    path = folder / "campaign.toml"
    path.write_text(text)
    cfg = load_config(str(path))
    run_campaign(cfg, folder / "state", source_text=text)
    return folder / "state", cfg.name
