"""The bad-input corpus, third table: a campaign folder being resumed, spoiled one way per case.

Truncated JSON, JSON lines, CSV and torch files, checksum mismatches, weight files that
are not what they claim, a folder started by another campaign: each must end as one clear
error (exit 2, the file and the problem named, no traceback) and leave every file of the
folder byte for byte as it was (and add none). Shared rules: `tests.faults.corpus`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.campaign.ledger import seal
from agent.cli.main import main
from tests.faults.corpus import RESUME, TINY, check_error, run_tiny, snapshot, swap


# -- state -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-iteration campaign (weights in iterations/0001); cases spoil copies of it."""
    root = tmp_path_factory.mktemp("campaign")
    (root / "tiny.toml").write_text(TINY)
    assert main(["run", str(root / "tiny.toml"), "--state", str(root / "state"), "--no-prefect", "--no-ray", "-q"]) == 0
    assert (root / "state" / "tiny" / "iterations" / "0001" / "surrogate.pt").is_file()
    return root / "state"


def _truncate(rel: str, keep: float = 0.5) -> Callable[[Path], Path]:
    def spoil(c: Path) -> Path:
        path = c / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        return path

    return spoil


def _flip_byte(rel: str) -> Callable[[Path], Path]:
    def spoil(c: Path) -> Path:
        path = c / rel
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))
        return path

    return spoil


def _ledger_lines(c: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (c / "ledger.jsonl").read_text().splitlines()]


def _write_ledger(c: Path, lines: list[dict[str, object]]) -> Path:
    path = c / "ledger.jsonl"
    path.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    return path


def _edit_ledger_value(c: Path) -> Path:
    lines = _ledger_lines(c)
    result = lines[2]["result"]
    assert isinstance(result, dict)
    result["values"] = {"gap": 1.0}  # a convenient hit, checksum left as it was
    return _write_ledger(c, lines)


def _ledger_duplicate_job(c: Path) -> Path:
    """A correctly sealed line that repeats an earlier job: only the job-id rule can notice."""
    lines = _ledger_lines(c)
    twin = {k: v for k, v in lines[0].items() if k != "sha256"}
    twin["seq"] = len(lines)
    return _write_ledger(c, [*lines, seal(twin)])


def _ledger_torn_middle(c: Path) -> Path:
    path = c / "ledger.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[3][: len(lines[3]) // 2] + "\n"
    path.write_text("".join(lines))
    return path


def _ledger_garbage_line(c: Path) -> Path:
    path = c / "ledger.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(5, "\x00\x00 not json \x00\n")
    path.write_text("".join(lines))
    return path


def _reseal(c: Path, name: str, content: bytes) -> Path:
    """Replace ``iterations/0001/<name>`` and rewrite the manifest and checkpoint checksums to
    match, as a careless copy between campaigns would: only the weight loader can notice."""
    folder = c / "iterations" / "0001"
    (folder / name).write_bytes(content)
    manifest_path = folder / "manifest.json"
    manifest = {k: v for k, v in json.loads(manifest_path.read_text()).items() if k != "sha256"}
    manifest["files"][name] = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    manifest_path.write_text(json.dumps(seal(manifest), indent=1))
    checkpoint = json.loads((c / "campaign.json").read_text())
    checkpoint["manifest_sha256"] = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    (c / "campaign.json").write_text(json.dumps(checkpoint))
    return folder / name


def _swap_weights(name: str, other: str) -> Callable[[Path], Path]:
    return lambda c: _reseal(c, name, (c / "iterations" / "0001" / other).read_bytes())


def _garbage_weights(name: str) -> Callable[[Path], Path]:
    return lambda c: _reseal(c, name, b"PK\x03\x04 definitely not a torch archive" * 10)


def _torch_weights(name: str, payload: object) -> Callable[[Path], Path]:
    def spoil(c: Path) -> Path:
        import io

        import torch

        buf = io.BytesIO()
        torch.save(payload, buf)
        return _reseal(c, name, buf.getvalue())

    return spoil


def _json_edit(rel: str, edit: Callable[[dict[str, object]], None]) -> Callable[[Path], Path]:
    def spoil(c: Path) -> Path:
        path = c / rel
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        return path

    return spoil


def _write(rel: str, content: bytes) -> Callable[[Path], Path]:
    def spoil(c: Path) -> Path:
        (c / rel).write_bytes(content)
        return c / rel

    return spoil


def _edit_batch(c: Path) -> Path:
    path = c / "iterations" / "0000" / "batch.csv"
    path.write_text(path.read_text().replace("3", "4", 1))
    return path


def _delete(rel: str) -> Callable[[Path], Path]:
    def spoil(c: Path) -> Path:
        (c / rel).unlink()
        return c / rel

    return spoil


def _sealed_inflight(c: Path) -> Path:
    path = c / "inflight.json"
    body = seal({"iteration": 2, "phase": "submitted", "jobs": []})
    body["iteration"] = 1  # altered after sealing
    path.write_text(json.dumps(body))
    return path


@dataclass(frozen=True)
class StateCase:
    id: str
    spoil: Callable[[Path], Path]  # campaign folder -> the file it spoiled (the one to name)
    expected: tuple[str, ...]
    config: Callable[[str], str] = lambda text: text  # edits the resume config


W1 = "iterations/0001"
STATE_CASES = [
    StateCase("truncated_campaign_json", _truncate("campaign.json"), ("not valid JSON (truncated or damaged?)",)),
    StateCase(
        "campaign_json_wrong_type",
        _json_edit("campaign.json", lambda d: d.update(iteration="1")),
        ("'iteration' is missing or not a non-negative integer",),
    ),
    StateCase(
        "campaign_json_beyond_iterations",
        _json_edit("campaign.json", lambda d: d.update(iteration=7)),
        ("says iteration 7 is committed", "iterations/0002/manifest.json is missing"),
    ),
    StateCase(
        "checkpoint_checksum_mismatch",
        _json_edit("campaign.json", lambda d: d.update(manifest_sha256="0" * 64)),
        ("does not match the checksum",),
    ),
    StateCase("truncated_config_json", _truncate("config.json"), ("not valid JSON",)),
    StateCase("ledger_value_edited", _edit_ledger_value, ("line 3: checksum mismatch",)),
    StateCase("ledger_torn_middle_line", _ledger_torn_middle, ("line 4: not valid JSON",)),
    StateCase("ledger_garbage_line", _ledger_garbage_line, ("line 6: not valid JSON",)),
    StateCase("ledger_duplicate_job", _ledger_duplicate_job, ("line 17: job", "is recorded twice")),
    StateCase("truncated_manifest", _truncate(f"{W1}/manifest.json"), ("does not match the checksum",)),
    StateCase("truncated_old_manifest", _truncate("iterations/0000/manifest.json"), ("not valid JSON",)),
    StateCase("committed_batch_edited", _edit_batch, ("content differs from", "sha256 or size mismatch")),
    StateCase("truncated_candidates_csv", _truncate(f"{W1}/candidates.csv"), ("content differs from",)),
    StateCase("committed_file_deleted", _delete(f"{W1}/metrics.json"), ("but missing",)),
    StateCase("surrogate_flipped_byte", _flip_byte(f"{W1}/surrogate.pt"), ("content differs from",)),
    StateCase("surrogate_truncated", _truncate(f"{W1}/surrogate.pt"), ("content differs from",)),
    StateCase("surrogate_garbage_resealed", _garbage_weights("surrogate.pt"), ("unreadable or corrupt",)),
    StateCase(
        "surrogate_is_generator_resealed",
        _swap_weights("surrogate.pt", "generator.pt"),
        ("is not an innloop surrogate weight file",),
    ),
    StateCase(
        "generator_is_surrogate_resealed",
        _swap_weights("generator.pt", "surrogate.pt"),
        ("cannot load generator weights", "missing or wrong format tag"),
    ),
    StateCase("generator_garbage_resealed", _garbage_weights("generator.pt"), ("not a readable torch file",)),
    StateCase(
        "surrogate_plain_tensor_resealed",
        _torch_weights("surrogate.pt", {"weights": [1.0, 2.0]}),
        ("is not an innloop surrogate weight file",),
    ),
    StateCase("garbage_inflight", _write("inflight.json", b'{"jobs": [tru'), ("in-flight job list is not valid JSON",)),
    StateCase("inflight_checksum_mismatch", _sealed_inflight, ("checksum mismatch",)),
    StateCase(
        "other_campaigns_state",
        lambda c: c,  # the message names the campaign folder
        ("was started with a different configuration", "fingerprint"),
        config=lambda text: swap(text, "seed = 1", "seed = 2"),
    ),
    StateCase(
        "other_campaigns_config_json",
        lambda c: _json_edit("config.json", lambda d: d.update(fingerprint="0123456789abcdef"))(c).parent,
        ("was started with a different configuration",),
    ),
]


@pytest.mark.parametrize("case", STATE_CASES, ids=[c.id for c in STATE_CASES])
def test_bad_state(case: StateCase, campaign: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    shutil.copytree(campaign, state)
    spoiled = case.spoil(state / "tiny")
    config = tmp_path / "tiny.toml"
    config.write_text(case.config(RESUME))
    before = snapshot(state)
    code, err = run_tiny(capsys, config, state)
    check_error(code, err, spoiled, case.expected)
    assert snapshot(state) == before, "a bad state was changed"


def test_resume_of_an_unspoiled_copy_works(campaign: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The corpus's baseline: a copied state resumes, so every failure above is the spoiling's."""
    state = tmp_path / "state"
    shutil.copytree(campaign, state)
    (tmp_path / "tiny.toml").write_text(RESUME)
    code, err = run_tiny(capsys, tmp_path / "tiny.toml", state)
    assert code == 0, err
    assert (state / "tiny" / "iterations" / "0002" / "manifest.json").is_file()
