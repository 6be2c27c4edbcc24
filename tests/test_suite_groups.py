"""The suite's worker groups take effect: under ``--dist loadgroup`` xdist sends a group to
one worker by the suffix it adds to each grouped test's id (``…@slurm``).

Why a test. Where the suffix is missing (pytest 9.2 with xdist 3.8, or the conftest hook
running after xdist's) the groups are ignored in silence: a SLURM cluster per worker, and
every expensive session fixture built on each worker, minutes of suite time.
"""

from __future__ import annotations

import pytest


def test_a_shared_fixtures_tests_form_one_worker_group(group_probe: None, request: pytest.FixtureRequest) -> None:
    marks = [m.args[0] for m in request.node.iter_markers("xdist_group")]
    assert marks == ["group-probe"], "tests/conftest.py puts a SHARED fixture's tests in its group"
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@group-probe"), (
            f"xdist ignores the worker groups ({request.node.nodeid} has no group suffix): "
            "check the pytest and pytest-xdist versions against pyproject.toml"
        )
