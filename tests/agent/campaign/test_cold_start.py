"""A campaign on a material it has never seen: no prior data, random designs first, its
models start once enough results are in, and it finds hits measured from nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.campaign.config import config_from_dict
from agent.campaign.plan import MIN_TRAIN
from agent.campaign.runner import campaign_status, run_campaign
from agent.campaign.state import ledger_arrays
from agent.core.materials import get_material

QUICK = {
    "members": 2,
    "surrogate_epochs": 40,
    "surrogate_warm_epochs": 10,
    "generator_epochs": 10,
    "generator_warm_epochs": 3,
}


def _table(path: Path, n: int = 160) -> np.ndarray:
    """A WS2 table of ``n`` uniform designs with a smooth made-up gap: 1.9 eV unstrained,
    closing with in-plane strain and field, metallic far out (as real strain maps are)."""
    space = get_material("ws2").space
    U = space.sample_unit(np.random.default_rng(3), n)
    strain = 2.2 * np.abs(U[:, 0] - 0.5) + 2.2 * np.abs(U[:, 1] - 0.5)
    gap = np.clip(1.9 - strain - 0.6 * np.abs(U[:, 6] - 0.5), 0, None)
    frame = space.to_frame(space.from_unit(U)).assign(gap=gap)
    frame.to_csv(path, index=False, float_format="%.10g")
    return gap


def test_a_campaign_starts_from_nothing_on_a_tiny_table(tmp_path: Path) -> None:
    gap = _table(tmp_path / "ws2.csv")
    assert 6 <= int((np.abs(gap - 1.0) <= 0.1).sum()) <= 40, "a handful of rows in the window, as in real tables"
    raw = {
        "name": "cold",
        "material": "ws2",
        "seed": 1,
        "targets": [{"value": 1.0, "window": 0.1, "hits": 4}],
        "oracle": {"name": "table", "settings": {"path": str(tmp_path / "ws2.csv"), "material": "ws2"}},
        "initial": {"random": 5},  # below MIN_TRAIN: the next batch is random too
        "loop": {"batch_size": 5, "exploration": 0.2, "samples_per_target": 100},
        "models": QUICK,
        "budget": {"oracle_calls": 80},
        "ray": {"enabled": False},
        "retry": {"poll_interval_s": 0.01},
    }
    run = run_campaign(config_from_dict(raw), tmp_path / "state")
    state = run.state
    assert state.prior_X is None and state.prior_y is None, "cold start: nothing known before"
    fits = [bool(m.get("fit")) for m in state.history[1:]]
    assert fits[0] is False and all(fits[1:]), "no models on 5 results; models from MIN_TRAIN on"
    assert 5 < MIN_TRAIN <= 10
    tags = [r.tag.split("/")[0] for r in state.records]
    assert tags[:10] == ["seed"] * 10, "random designs until there is enough to learn from"
    assert "seed" not in tags[10:], "then the models choose"
    U, y = ledger_arrays(state)
    status = campaign_status(tmp_path / "state", "cold")
    target = status["targets"][0]
    assert target["hits"] >= 4 and state.stopped is not None and "hits" in state.stopped
    assert len(U) <= 80 and np.isfinite(y).all()
