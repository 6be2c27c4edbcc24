"""``[[constraints]]``: parsing and its errors, stored configs that must not change, and the
feasibility rule (a missing value is infeasible) that every hit count relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from agent.campaign.config import config_from_dict
from agent.campaign.constraints import (
    UNMEASURED_AFTER,
    LimitSpec,
    check_oracle_values,
    feasible,
    limit_values,
    unmeasured,
    unmeasured_message,
)
from agent.campaign.ledger import LedgerRecord
from agent.campaign.state import CampaignState, diverse_hits, feasible_rows, hit_designs, hit_table, missing_hits
from agent.core.errors import ConfigError
from agent.core.materials import get_material
from oracles.base import Handle, JobStatus, NamesValues, Oracle, Result
from oracles.mock import MockOracle
from oracles.table import TableOracle
from oracles.testing.faulty import FaultyOracle

SPACE = get_material("mos2").space
BASE: dict[str, Any] = {
    "name": "limits",
    "targets": [{"value": 1.0, "window": 0.1, "hits": 5}],
    "ray": {"enabled": False},
}
LIMIT = {"property": "strain_energy", "max": 1.5}


def problems(constraints: list[Any], **more: Any) -> str:
    with pytest.raises(ConfigError) as err:
        config_from_dict(BASE | {"constraints": constraints} | more)
    return str(err.value)


def test_a_limit_is_parsed_and_kept_with_the_config() -> None:
    cfg = config_from_dict(BASE | {"constraints": [LIMIT, {"property": "cost", "min": 0, "max": 3.0}]})
    a, b = cfg.constraints
    assert (a.property, a.min, a.max, a.bounds()) == ("strain_energy", None, 1.5, (-np.inf, 1.5))
    assert a.label() == "strain_energy ≤ 1.5" and b.label() == "0 ≤ cost ≤ 3"
    assert cfg.to_dict()["constraints"] == [LIMIT, {"property": "cost", "min": 0.0, "max": 3.0}]
    assert config_from_dict(cfg.to_dict()) == cfg, "the stored config reads back equal"
    assert cfg.fingerprint() != config_from_dict(BASE).fingerprint(), "a limit is part of what a campaign is"


def test_without_constraints_a_config_keeps_the_fingerprint_it_had_before_them() -> None:
    # computed with the code before [[constraints]] existed: a stored campaign must resume unchanged
    raw = {
        "name": "golden",
        "seed": 3,
        "targets": [{"value": 1.0, "window": 0.1, "hits": 5}, {"low": 1.5}],
        "loop": {"batch_size": 4},
        "ray": {"enabled": False},
    }
    cfg = config_from_dict(raw)
    assert "constraints" not in cfg.to_dict()
    assert (cfg.fingerprint(), cfg.fingerprint(exclude=())) == ("5eff684e8f93b2c8", "7724757a2926885e")
    assert config_from_dict(raw | {"constraints": []}).fingerprint() == cfg.fingerprint()


def test_every_mistake_in_a_limit_is_listed() -> None:
    text = problems(
        [
            {"property": "strain_energy"},
            {"property": "x y", "max": 1.0},
            {"property": "e", "min": 2.0, "max": 1.0},
            {"property": "f", "max": True},
            {"property": "g", "max": float("inf")},
            {"property": "h", "max": "1.5"},
            {"property": "i", "maximum": 1.0},
            {"max": 1.0},
        ],
        seed="x",
    )
    assert "9 problems" in text, text
    assert "seed: must be an integer" in text, "listed with the rest of the file's mistakes"
    assert "constraints.0: give min and/or max" in text
    assert "constraints.1.property: must be a value name" in text
    assert "constraints.2: min (2) must be below max (1)" in text
    assert "constraints.3.max: must be a number (got True)" in text, "a boolean is not a bound"
    assert "constraints.4.max: must be a finite number" in text
    assert "constraints.5.max: must be a number (got '1.5')" in text
    assert "constraints.6.maximum: unknown key (did you mean 'max'?)" in text
    assert "constraints.7.property: required key is missing" in text


def test_a_limit_on_the_target_a_parameter_or_twice_on_one_property_is_refused() -> None:
    text = problems([{"property": "gap", "max": 2.0}, {"property": "a", "min": 3.0}, LIMIT, LIMIT | {"min": 0.0}])
    assert "constraints.0.property: is the target property" in text
    assert "constraints.1.property: is a design parameter" in text
    assert "constraints.3.property: limits the same property as constraints.2" in text
    space = {
        "property": {"name": "yield_pct"},
        "parameters": [{"name": "t", "lower": 0.0, "upper": 1.0}],
    }
    own = problems([{"property": "yield_pct", "min": 1.0}, {"property": "t", "max": 0.5}], material=None, space=space)
    assert "constraints.0.property: is the target property" in own and "constraints.1.property: is a design" in own


def design(u: np.ndarray) -> dict[str, float]:
    return dict(zip(SPACE.names, map(float, SPACE.from_unit(u[None])[0])))


def record(seq: int, u: np.ndarray, values: dict[str, float] | None, ok: bool = True) -> LedgerRecord:
    status = JobStatus.COMPLETED if ok else JobStatus.FAILED
    result = Result(Handle("table", f"j{seq}", design(u), submitted_at=1.0), status, values if ok else None)
    return LedgerRecord(seq, 0, 1.0, result, "seed")


def test_feasible_needs_every_value_present_and_inside() -> None:
    limits = [LimitSpec(property="e", max=1.5), LimitSpec(property="c", min=0.0, max=2.0)]
    values = np.array([[1.0, 1.0], [1.5, 0.0], [1.6, 1.0], [np.nan, 1.0], [1.0, -0.1], [1.0, np.nan]])
    assert feasible(values, limits).tolist() == [True, True, False, False, False, False]
    assert feasible(np.zeros((3, 0)), []).all(), "no limits: everything is feasible"


def test_hits_are_feasible_in_window_measurements_wherever_they_are_counted() -> None:
    cfg = config_from_dict(BASE | {"constraints": [LIMIT]})
    U = SPACE.sample_unit(np.random.default_rng(0), 6)
    recs = [
        record(0, U[0], {"gap": 1.0, "strain_energy": 0.4}),  # a hit
        record(1, U[1], {"gap": 1.02, "strain_energy": 2.0}),  # in the window, over the limit
        record(2, U[2], {"gap": 0.98}),  # in the window, strain energy missing: never feasible
        record(3, U[3], {"gap": 1.05, "strain_energy": True}),  # not a number
        record(4, U[4], None, ok=False),
        record(5, U[5], {"gap": 1.5, "strain_energy": 0.1}),  # feasible, out of the window
    ]
    state = CampaignState(cfg, SPACE, "gap", records=tuple(recs))
    seqs = [r.seq for r in state.records]  # the state's canonical order, not the list's
    values = dict(zip(seqs, limit_values(state.records, cfg.constraints)[:, 0]))
    assert np.isnan([values[2], values[3], values[4]]).all() and values[0] == 0.4
    assert dict(zip(seqs, feasible_rows(state).tolist())) == {0: True, 1: False, 2: False, 3: False, 4: False, 5: True}
    (hits,) = hit_designs(state)
    np.testing.assert_allclose(hits, SPACE.to_unit(SPACE.from_rows([recs[0].result.handle.design])))
    assert missing_hits(state) == [4]
    ((row,),) = hit_table(state)
    assert row["strain_energy"] == 0.4 and row["gap"] == 1.0
    free = CampaignState(config_from_dict(BASE), SPACE, "gap", records=tuple(recs))
    assert len(hit_designs(free)[0]) == 4, "the same ledger unconstrained: every in-window result is a hit"
    U_all = SPACE.to_unit(SPACE.from_rows([r.result.handle.design for r in state.records]))
    y = np.array([(r.result.values or {}).get("gap", np.nan) for r in state.records])
    (only,) = diverse_hits(U_all, y, cfg.targets[0].range, 0.0, feasible_rows(state))
    assert seqs[only] == 0
    assert len(diverse_hits(U_all, y, cfg.targets[0].range, 0.0)) == 4, "without the mask: in the window only"


def test_min_and_max_both_bound_a_hit() -> None:
    cfg = config_from_dict(BASE | {"constraints": [{"property": "strain_energy", "min": 0.3, "max": 1.5}]})
    U = SPACE.sample_unit(np.random.default_rng(3), 3)
    values = [0.1, 0.3, 1.6]  # below min, on min, above max
    recs = [record(i, u, {"gap": 1.0, "strain_energy": v}) for i, (u, v) in enumerate(zip(U, values))]
    ((row,),) = hit_table(CampaignState(cfg, SPACE, "gap", records=tuple(recs)))
    assert row["strain_energy"] == 0.3, "the bounds are inclusive; each side bars its own"


def test_an_oracle_that_names_its_values_is_checked_before_anything_is_sent(tmp_path: Path) -> None:
    limits = [LimitSpec(property="strain_energy", max=1.5)]
    with pytest.raises(ConfigError, match=r"mock oracle does not measure 'strain_energy'.*carry: gap"):
        check_oracle_values(limits, MockOracle(workdir=tmp_path))
    table = tmp_path / "t.csv"
    frame = SPACE.to_frame(SPACE.from_unit(SPACE.sample_unit(np.random.default_rng(2), 2)))
    frame.assign(gap=[1.0, 0.5], strain_energy=[0.3, 2.0]).to_csv(table, index=False)
    check_oracle_values(limits, TableOracle(path=table))  # the column is there: nothing to say
    check_oracle_values([], MockOracle(workdir=tmp_path))


def test_a_property_the_latest_results_lack_is_found_and_only_new_evidence_counts() -> None:
    limits = [LimitSpec(property="strain_energy", max=1.5), LimitSpec(property="cost", max=1.0)]
    U = SPACE.sample_unit(np.random.default_rng(1), 2 * UNMEASURED_AFTER + 2)
    measured = [record(i, u, {"gap": 1.0, "strain_energy": 0.5}) for i, u in enumerate(U[:2])]
    lacking = [record(10 + i, u, {"gap": 1.0, "cost": 0.5}) for i, u in enumerate(U[2:])]
    failed = record(99, U[0], None, ok=False)
    assert unmeasured([*lacking[: UNMEASURED_AFTER - 1], failed], limits) == [], "too early to tell"
    recs = measured + lacking[:UNMEASURED_AFTER]
    assert unmeasured(recs, limits) == ["strain_energy"], "values long ago do not keep it going"
    assert unmeasured([*recs, failed], limits) == ["strain_energy"], "a failure is no evidence either way"
    fixed = [*recs, record(50, U[0], {"gap": 1.0, "strain_energy": 9.0})]
    assert unmeasured(fixed, limits) == [], "one of the latest results carries it: the cause was fixed"
    # a resumed run knows the results it found: it waits for a new one before it can stop again
    known = {r.seq for r in recs}
    assert unmeasured([*recs, failed], limits, known=known) == []
    assert unmeasured([*recs, *lacking[UNMEASURED_AFTER:]], limits, known=known) == ["strain_energy"]
    said = unmeasured_message(["strain_energy"], "lab", recs)
    assert f"last {UNMEASURED_AFTER} completed results of the lab oracle carry no 'strain_energy'" in said
    assert "(their values: cost, gap)" in said and "or its setup" in said and "run again" in said
    warned = unmeasured_message(["strain_energy"], "gpaw", recs, declared=True)
    assert "although the oracle declares it" in warned and "goes on" in warned


class _Declares:
    """Any oracle with ``value_names`` (as GPAW's is): the up-front check asks it, whatever it is."""

    name = "declaring"

    def value_names(self) -> frozenset[str]:
        return frozenset({"gap", "energy"})


def test_the_up_front_check_asks_any_oracle_that_declares_its_values(tmp_path: Path) -> None:
    limits = [LimitSpec(property="strain_energy", max=1.5)]
    with pytest.raises(ConfigError, match=r"declaring oracle does not measure 'strain_energy'.*carry: energy, gap"):
        check_oracle_values(limits, cast(Oracle, _Declares()))
    check_oracle_values([LimitSpec(property="energy", max=0.0)], cast(Oracle, _Declares()))
    wrapped = FaultyOracle(MockOracle(workdir=tmp_path))  # a wrapper declares what its oracle declares
    assert isinstance(wrapped, NamesValues) and wrapped.value_names() == {"gap"}
    with pytest.raises(ConfigError, match="mock oracle does not measure 'strain_energy'"):
        check_oracle_values(limits, wrapped)


def test_a_limit_on_the_target_is_listed_with_the_mistakes_of_other_entries() -> None:
    text = problems([{"property": "gap", "max": 1}, {"property": "a", "min": True}, {"property": "x"}, LIMIT, LIMIT])
    assert "5 problems" in text, text
    assert "constraints.0.property: is the target property" in text, "not hidden by the other entries' mistakes"
    assert "constraints.1.min: must be a number (got True)" in text
    assert "constraints.1.property: is a design parameter" in text
    assert "constraints.2: give min and/or max" in text
    assert "constraints.4.property: limits the same property as constraints.3" in text
    lines = [line for line in text.splitlines() if line.startswith("  - ")]
    assert lines == sorted(lines), "entry by entry, in the file's order"
    assert "material: unknown material" in problems([{"property": "x", "max": 1}], material="nope")
