from __future__ import annotations

import json
import re

import pytest

from agent.core.errors import UnknownNameError
from oracles import available_oracles, make_oracle
from oracles.base import ErrorClass, Handle, JobStatus, OracleError, Result


def test_handles_and_results_round_trip_through_json() -> None:
    h = Handle("mock", "j1", {"a": 3.1, "b": 3.2}, native_id="42", workdir="/tmp/x", submitted_at=5.0)
    assert Handle.from_json(json.loads(json.dumps(h.to_json()))) == h
    r = Result(h, JobStatus.FAILED, error_class=ErrorClass.PHYSICS, message="scf", provenance={"code": "x"})
    back = Result.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r and not back.ok


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ([1, 2], "JSON object"),
        ({"oracle": "mock"}, "missing ['job_id', 'design']"),
        ({"oracle": "mock", "job_id": "1", "design": {"a": None}}, "design must map names to numbers"),
        ({"oracle": "mock", "job_id": "1", "design": {"a": True}}, "design must map names to numbers"),
        ({"oracle": "mock", "job_id": "1", "design": {}, "colour": 1}, "unknown fields ['colour']"),
    ],
)
def test_malformed_handles_are_named(payload: object, words: str) -> None:
    with pytest.raises(OracleError, match=re.escape(words)):
        Handle.from_json(payload)


def test_status_terminality() -> None:
    assert not JobStatus.PENDING.terminal and not JobStatus.RUNNING.terminal
    assert all(s.terminal for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.ABANDONED))


def test_registry() -> None:
    assert {"mock", "table"} <= set(available_oracles())
    with pytest.raises(UnknownNameError, match=r"unknown oracle 'vasp-on-mars'.*mock"):
        make_oracle("vasp-on-mars")
