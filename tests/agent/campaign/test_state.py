"""Campaign state: diverse hits in arrival order and every stop rule."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from agent.campaign.config import config_from_dict
from agent.campaign.ledger import LedgerRecord
from agent.campaign.state import (
    FAILURE_STOP,
    CampaignState,
    diverse_hits,
    failure_report,
    hit_designs,
    missing_hits,
    stop_reason,
)
from agent.core.materials import get_material
from agent.core.targets import TargetRange
from oracles.base import ErrorClass, Handle, JobStatus, Result

SPACE = get_material("mos2").space

# -- diverse_hits ------------------------------------------------------------------------


def test_diverse_hits_window_is_inclusive() -> None:
    U = np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([0.9, 1.1, 1.1000001, 0.8999999, 1.0])
    assert diverse_hits(U, y, TargetRange.around(1.0, 0.1), 0.1).tolist() == [0, 1, 4]


def test_diverse_hits_spacing_is_greedy_in_arrival_order() -> None:
    U = np.array([[0.0, 0.0], [0.05, 0.0], [0.1, 0.0], [0.3, 0.0]])
    y = np.ones(4)
    # row 1 is too close to row 0; row 2 is exactly min_distance from row 0: it counts
    assert diverse_hits(U, y, TargetRange.around(1.0, 0.1), 0.1).tolist() == [0, 2, 3]
    # the same rows in another order: row 1 first now blocks both 0 and 2
    order = np.array([1, 0, 2, 3])
    kept = diverse_hits(U[order], y[order], TargetRange.around(1.0, 0.1), 0.1)
    assert order[kept].tolist() == [1, 3]
    # min_distance just above the spacing of rows 0 and 2
    assert diverse_hits(U, y, TargetRange.around(1.0, 0.1), 0.1000001).tolist() == [0, 3]
    assert diverse_hits(U, y, TargetRange.around(1.0, 0.1), 0.0).tolist() == [0, 1, 2, 3]


def test_diverse_hits_only_hits_block() -> None:
    # a non-hit next to a hit does not stop that hit from counting
    U = np.array([[0.0, 0.0], [0.01, 0.0], [0.5, 0.5]])
    y = np.array([3.0, 1.0, 1.05])
    assert diverse_hits(U, y, TargetRange.around(1.0, 0.1), 0.2).tolist() == [1, 2]
    assert diverse_hits(np.zeros((0, 2)), np.zeros(0), TargetRange.around(1.0, 0.1), 0.2).tolist() == []
    assert diverse_hits(U, y, TargetRange.around(5.0, 0.1), 0.2).tolist() == []


def test_later_results_never_lower_the_count() -> None:
    rng = np.random.default_rng(4)
    U = rng.random((120, 3))
    y = rng.uniform(0.5, 1.5, 120)
    counts = [len(diverse_hits(U[:n], y[:n], TargetRange.around(1.0, 0.15), 0.2)) for n in range(len(y) + 1)]
    assert all(b >= a for a, b in itertools.pairwise(counts))
    final = diverse_hits(U, y, TargetRange.around(1.0, 0.15), 0.2)
    assert len(final) > 3
    D = np.linalg.norm(U[final][:, None] - U[final][None], axis=-1)
    assert D[np.triu_indices(len(final), 1)].min() >= 0.2
    assert np.all(np.abs(y[final] - 1.0) <= 0.15)


# -- stop_reason -------------------------------------------------------------------------


def _config(budget: dict[str, Any], *, hits: int = 2, min_distance: float = 0.1) -> Any:
    return config_from_dict(
        {
            "name": "c",
            "targets": [{"value": 1.0, "window": 0.1, "hits": hits}],
            "loop": {"min_distance": min_distance},
            "budget": budget,
        }
    )


def _record(seq: int, unit: list[float], value: float | None) -> LedgerRecord:
    x = SPACE.from_unit(np.asarray([unit], dtype=np.float64))[0]
    design = dict(zip(SPACE.names, map(float, x)))
    handle = Handle("mock", f"job-{seq}", design, submitted_at=100.0 + seq)
    if value is None:
        result = Result.failure(handle, ErrorClass.PHYSICS, "SCF did not converge")
    else:
        result = Result(handle, JobStatus.COMPLETED, values={"gap": value})
    return LedgerRecord(seq, 0, 100.0 + seq, result, "test")


def _state(budget: dict[str, Any], records: list[LedgerRecord], **kw: Any) -> CampaignState:
    cfg = _config(budget, hits=kw.pop("hits", 2))
    return CampaignState(cfg, SPACE, "gap", records=tuple(records), **kw)


CORNER = [0.5] * 7
FAR = [0.5] * 6 + [0.9]  # 0.4 away in the unit box
NEAR = [0.5] * 6 + [0.55]  # 0.05 away from CORNER


def test_hits_complete_stops() -> None:
    recs = [_record(0, CORNER, 1.02), _record(1, FAR, 0.95)]
    state = _state({"oracle_calls": 100}, recs)
    assert missing_hits(state) == [0]
    assert stop_reason(state) == "every target has its diverse hits"


def test_near_duplicate_hits_and_failures_do_not_complete() -> None:
    recs = [_record(0, CORNER, 1.02), _record(1, NEAR, 1.0), _record(2, FAR, None), _record(3, FAR, 1.5)]
    state = _state({"oracle_calls": 100}, recs)
    assert missing_hits(state) == [1]
    assert len(hit_designs(state)[0]) == 1
    assert stop_reason(state) is None
    assert state.calls == 4, "failures count as oracle calls"


def test_oracle_call_budget() -> None:
    recs = [_record(0, CORNER, 3.0), _record(1, FAR, None), _record(2, NEAR, 0.2)]
    assert stop_reason(_state({"oracle_calls": 4}, recs)) is None
    reason = stop_reason(_state({"oracle_calls": 3}, recs))
    assert reason == "oracle-call budget reached (3 of 3)"
    assert stop_reason(_state({"oracle_calls": 2}, recs)) == "oracle-call budget reached (3 of 2)"


def test_hits_win_over_an_exhausted_budget() -> None:
    recs = [_record(0, CORNER, 1.0), _record(1, FAR, 1.0)]
    assert stop_reason(_state({"oracle_calls": 1}, recs)) == "every target has its diverse hits"


def test_iteration_budget() -> None:
    budget = {"oracle_calls": None, "iterations": 3}
    assert stop_reason(_state(budget, [], iteration=2)) is None
    assert stop_reason(_state(budget, [], iteration=3)) == "iteration budget reached (3 of 3)"
    # the call budget is checked before the iteration budget
    both = {"oracle_calls": 1, "iterations": 3}
    reason = stop_reason(_state(both, [_record(0, CORNER, 3.0)], iteration=5))
    assert reason is not None and reason.startswith("oracle-call")


def test_wall_time_budget() -> None:
    budget = {"oracle_calls": None, "wall_time_s": 100.0}
    state = _state(budget, [], elapsed_s=40.0)
    assert stop_reason(state) is None, "no run start: wall time is not judged"
    assert stop_reason(state, run_started=1000.0, now=1059.0) is None
    assert stop_reason(state, run_started=1000.0, now=1060.0) == "wall-time budget reached (100 s of 100 s)"
    assert stop_reason(state, run_started=1000.0, now=1100.0) == "wall-time budget reached (140 s of 100 s)"
    fresh = _state(budget, [], elapsed_s=0.0)
    assert stop_reason(fresh, run_started=1000.0, now=1099.5) is None


def test_wall_time_uses_the_clock_when_now_is_not_given() -> None:
    import time

    state = _state({"oracle_calls": None, "wall_time_s": 5.0}, [])
    assert stop_reason(state, run_started=time.time() - 10.0) is not None
    assert stop_reason(state, run_started=time.time()) is None


@pytest.mark.parametrize("extra", [{"hits": 3}])
def test_with_records_grows_the_state(extra: dict[str, Any]) -> None:
    state = _state({"oracle_calls": 100}, [_record(0, CORNER, 1.0)], **extra)
    assert missing_hits(state) == [2]
    grown = state.with_records([_record(1, FAR, 1.05), _record(2, [0.1] * 7, 0.91)])
    assert state.calls == 1 and grown.calls == 3
    assert missing_hits(grown) == [0]
    assert stop_reason(grown) == "every target has its diverse hits"


# -- failure-rate stop -------------------------------------------------------------------


def _failing(seq: int, kind: str) -> LedgerRecord:
    x = SPACE.from_unit(np.full((1, 7), 0.1 + 0.01 * (seq % 80)))[0]
    handle = Handle("mock", f"job-{seq}", dict(zip(SPACE.names, map(float, x))), submitted_at=float(seq))
    if kind == "ok":
        return LedgerRecord(seq, 0, float(seq), Result(handle, JobStatus.COMPLETED, values={"gap": 3.0}), "t")
    if kind == "walltime":
        res = Result.failure(handle, ErrorClass.INFRASTRUCTURE, "job exhausted its time limit\nmore detail")
    elif kind == "lost":
        res = Result.failure(handle, ErrorClass.INFRASTRUCTURE, "", status=JobStatus.ABANDONED)
    else:
        res = Result.failure(handle, ErrorClass.PHYSICS, "SCF did not converge")
    return LedgerRecord(seq, 0, float(seq), res, "t")


def _failure_state(kinds: list[str], retry: dict[str, Any]) -> CampaignState:
    cfg = config_from_dict(
        {"name": "c", "targets": [{"value": 1.0, "hits": 5}], "budget": {"oracle_calls": 1000}, "retry": retry}
    )
    return CampaignState(cfg, SPACE, "gap", records=tuple(_failing(i, k) for i, k in enumerate(kinds)))


def test_failure_rate_stops_only_over_a_full_window_above_the_limit() -> None:
    retry = {"max_failure_rate": 0.5, "failure_window": 10}
    assert failure_report(_failure_state(["walltime"] * 9, retry)) is None, "fewer results than the window"
    assert failure_report(_failure_state(["walltime"] * 5 + ["ok"] * 5, retry)) is None, "at the limit is fine"
    # an old burst of failures is forgotten once the last window is healthy
    assert failure_report(_failure_state(["walltime"] * 30 + ["ok"] * 10, retry)) is None
    kinds = ["ok"] * 20 + ["walltime"] * 4 + ["lost"] * 1 + ["scf"] * 1 + ["ok"] * 4
    reason = stop_reason(_failure_state(kinds, retry))
    assert reason is not None and reason.startswith(FAILURE_STOP)
    assert "60% over the last 10 results" in reason and "limit 50%" in reason
    assert "4 failed (infrastructure), 1 abandoned (infrastructure), 1 failed (physics)" in reason
    assert "commonest message (4x): job exhausted its time limit;" in reason


def test_failure_rate_limit_can_be_switched_off_and_hits_still_win() -> None:
    assert failure_report(_failure_state(["walltime"] * 50, {"max_failure_rate": None})) is None
    assert failure_report(_failure_state(["walltime"] * 50, {"max_failure_rate": 1.0})) is None
    assert failure_report(_failure_state(["walltime"] * 40, {})) is not None, "on by default"
