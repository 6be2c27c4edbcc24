"""A target's ``families``: how the key is read, refused, and what it does to the stop rule.

The families themselves come from the models (`agent.campaign.plan.believed_families`) and
reach the state through an iteration's metrics; here they are written by hand, so the
counts are exact and nothing is trained.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.campaign.config import config_from_dict
from agent.campaign.ledger import LedgerRecord
from agent.campaign.state import (
    CampaignState,
    families_covered,
    latest_families,
    missing_hits,
    still_wanted,
    stop_reason,
)
from agent.core.errors import ConfigError
from agent.core.materials import get_material
from agent.design.coverage import Families
from oracles.base import Handle, JobStatus, Result

SPACE = get_material("mos2").space
D = SPACE.unit_dim
# three families along the unit box's diagonal, each of radius 0.1
CENTRES = np.array([[0.2] * D, [0.5] * D, [0.8] * D])
FAMILIES = Families(CENTRES, np.array([40, 30, 30]), 0.1)


def _target(**keys: Any) -> dict[str, Any]:
    return {"name": "fam", "targets": [{"value": 1.0, "window": 0.1, **keys}], "budget": {"oracle_calls": 100}}


# -- the key ---------------------------------------------------------------------------------


def test_families_without_hits_asks_one_hit_per_family() -> None:
    cfg = config_from_dict(_target(families=4))
    assert cfg.targets[0].families == 4 and cfg.targets[0].hits == 4
    both = config_from_dict(_target(families=4, hits=12))
    assert both.targets[0].families == 4 and both.targets[0].hits == 12
    unset = config_from_dict(_target())
    assert unset.targets[0].families is None and unset.targets[0].hits == 50
    # read back from a campaign's config.json as it was written; unset, the key is not written
    assert config_from_dict(cfg.to_dict()) == cfg
    assert "families" not in unset.to_dict()["targets"][0]
    assert unset.fingerprint() != config_from_dict(_target(families=50, hits=50)).fingerprint()


def test_more_families_than_hits_is_refused_in_one_clear_line() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict(_target(families=5, hits=3), source="fam.toml")
    text = str(exc.value)
    assert text.startswith("invalid configuration fam.toml (1 problem):"), text
    lines = [ln for ln in text.splitlines() if ln.startswith("  - ")]
    assert len(lines) == 1 and "targets.0: families (5) each need a hit: ask for at least 5 hits" in lines[0], text
    assert "pydantic" not in text
    config_from_dict(_target(families=3, hits=3))  # as many families as hits is fine


@pytest.mark.parametrize("value", [0, -1, 2.5, "three"])
def test_families_must_be_a_positive_integer(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"targets\.0\.families: must be"):
        config_from_dict(_target(families=value, hits=5), source="fam.toml")


# -- the stop rule ---------------------------------------------------------------------------


def _record(seq: int, unit: list[float] | np.ndarray, value: float) -> LedgerRecord:
    x = SPACE.from_unit(np.asarray([unit], dtype=np.float64))[0]
    handle = Handle("mock", f"job-{seq}", dict(zip(SPACE.names, map(float, x))), submitted_at=100.0 + seq)
    return LedgerRecord(seq, 0, 100.0 + seq, Result(handle, JobStatus.COMPLETED, values={"gap": value}), "test")


def _state(
    records: list[LedgerRecord], *, families: int | None = 3, hits: int = 3, stored: bool = True
) -> CampaignState:
    keys: dict[str, Any] = {"hits": hits} | ({} if families is None else {"families": families})
    cfg = config_from_dict(_target(**keys))
    history: tuple[dict[str, Any], ...] = ({"iteration": 0},)
    if stored:  # the newest entry holding families is read; later ones without them do not hide it
        history = ({"iteration": 0, "families": [FAMILIES.to_dict()]}, {"iteration": 1})
    return CampaignState(cfg, SPACE, "gap", iteration=len(history), records=tuple(records), history=history)


def _near(centre: int, shift: float) -> np.ndarray:
    u = CENTRES[centre].copy()
    u[0] += shift
    return u


# three diverse hits (0.2 apart or more), two in family 0 and one in family 1
TWO_FAMILIES = [_record(0, _near(0, 0.0), 1.0), _record(1, _near(0, 0.2), 1.02), _record(2, _near(1, 0.0), 0.95)]


def test_enough_hits_in_too_few_families_keeps_the_campaign_going() -> None:
    state = _state(TWO_FAMILIES)
    assert missing_hits(state) == [0]
    believed = latest_families(state)[0]
    assert believed is not None and believed.k == 3
    assert families_covered(state) == [2]
    assert still_wanted(state) == [1]
    assert stop_reason(state) is None
    # a miss in the third family does not help; a hit there ends it
    missed = state.with_records([_record(3, _near(2, 0.0), 2.5)])
    assert families_covered(missed) == [2] and stop_reason(missed) is None
    done = missed.with_records([_record(4, _near(2, 0.05), 1.05)])
    assert families_covered(done) == [3] and missing_hits(done) == [0] and still_wanted(done) == [0]
    assert stop_reason(done) == "every target has its diverse hits and families"


def test_families_do_not_excuse_missing_hits() -> None:
    # every family holds a hit, but five hits are wanted: the hits decide
    three = [*TWO_FAMILIES[::2], _record(3, _near(2, 0.0), 1.0)]
    state = _state(three, hits=5)
    assert families_covered(state) == [3] and missing_hits(state) == [2] and still_wanted(state) == [2]
    assert stop_reason(state) is None


def test_a_target_asking_families_waits_for_the_models_to_find_them() -> None:
    state = _state([*TWO_FAMILIES, _record(3, _near(2, 0.0), 1.0)], stored=False)
    assert latest_families(state) == [None] and families_covered(state) == [None]
    assert missing_hits(state) == [0] and still_wanted(state) == [3]
    assert stop_reason(state) is None


def test_unset_families_stop_on_hits_alone() -> None:
    state = _state(TWO_FAMILIES, families=None)
    assert families_covered(state) == [2]  # still counted (and shown), never waited for
    assert still_wanted(state) == [0]
    assert stop_reason(state) == "every target has its diverse hits"


def test_one_family_is_covered_by_any_hit_and_stops_on_hits() -> None:
    # families = 1: no spreading, and the whole solution set is one family that any hit covers
    state = _state(TWO_FAMILIES, families=1, stored=False)
    assert families_covered(state) == [1] and still_wanted(state) == [0]
    assert stop_reason(state) == "every target has its diverse hits and families"
    assert families_covered(_state([], families=1, hits=1, stored=False)) == [0]
