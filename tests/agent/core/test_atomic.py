"""Atomic files (`agent.core.atomic`): a write replaces whole or not at all; a create wins once."""

from __future__ import annotations

from pathlib import Path

from agent.core.atomic import create_bytes, write_bytes


def test_a_create_is_taken_by_the_first_writer_only(tmp_path: Path) -> None:
    path = tmp_path / "decision.json"
    assert create_bytes(path, b"first") and not create_bytes(path, b"second")
    assert path.read_bytes() == b"first"
    write_bytes(path, b"replaced")
    assert path.read_bytes() == b"replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decision.json"], "no temporary file is left"
