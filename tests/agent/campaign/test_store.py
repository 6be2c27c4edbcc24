from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.campaign.store import CampaignStore, Ledger, check_campaign_name
from agent.core.errors import ConfigError, StateError
from oracles.base import ErrorClass, Handle, JobStatus, Result

ROOT = Path(__file__).resolve().parents[3]


def _result(job: str, value: float | None = 1.25) -> Result:
    handle = Handle("mock", job, {"a": 0.5, "b": -1.0}, native_id=f"n-{job}", workdir="/w", submitted_at=10.0)
    if value is None:
        return Result.failure(handle, ErrorClass.PHYSICS, "SCF not converged", log="/w/log.txt")
    return Result(handle, JobStatus.COMPLETED, {"gap": value}, provenance={"code": "mock", "k": [1, 2]})


def _store(tmp_path: Path) -> CampaignStore:
    store = CampaignStore(tmp_path / "state", "run-1")
    store.create({"material": "mos2", "batch": 4}, "f00d", 'material = "mos2"\nbatch = 4\n')
    return store


@pytest.mark.parametrize("name", ["a", "run-1", "MoS2_v2.0", "0", "x" * 64])
def test_good_campaign_names(name: str) -> None:
    assert check_campaign_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../../etc", ";rm -rf", "a b", "a/b", ".hidden", "-x", "x" * 65, "ok\n", "a\\b"]
)
def test_bad_campaign_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="campaign name"):
        check_campaign_name(name)
    with pytest.raises(ConfigError):
        CampaignStore(tmp_path, name)


def test_ledger_round_trip_and_reopen(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert ledger.records() == [] and len(ledger) == 0
    r0 = ledger.append(_result("j0"), iteration=0, tag="seed")
    ledger.append(_result("j1", None), iteration=0, tag="seed")
    assert r0.seq == 0 and r0.tag == "seed"
    recs = ledger.records()
    assert [r.seq for r in recs] == [0, 1]
    assert recs[0].result == _result("j0") and recs[0].result.values == {"gap": 1.25}
    assert recs[1].result.error_class is ErrorClass.PHYSICS and recs[1].result.status is JobStatus.FAILED
    assert recs[1].result.message == "SCF not converged" and not recs[1].result.ok

    again = Ledger(tmp_path / "ledger.jsonl")
    assert again.job_ids() == {"j0", "j1"} and len(again) == 2
    assert again.append(_result("j2"), iteration=1, tag="batch").seq == 2
    assert [r.iteration for r in again.records()] == [0, 0, 1]
    with pytest.raises(StateError, match="'j1' is already in the ledger"):
        again.append(_result("j1"), iteration=1)
    assert len(again) == 3


def test_torn_line_ignored_then_repaired(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    for j in ("a", "b"):
        ledger.append(_result(j), iteration=0)
    good = path.read_bytes()
    path.write_bytes(good + b'{"seq":2,"iteration":0,"ti')
    fresh = Ledger(path)
    assert len(fresh.records()) == 2 and fresh.torn == 1
    assert path.read_bytes().endswith(b'"ti')  # reading never modifies the file
    assert fresh.repair() == len(b'{"seq":2,"iteration":0,"ti')
    assert path.read_bytes() == good and fresh.torn == 0 and fresh.repair() == 0


def test_append_after_torn_line_repairs_first(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    Ledger(path).append(_result("a"), iteration=0)
    with open(path, "ab") as fh:
        fh.write(b'{"half')
    Ledger(path).append(_result("b"), iteration=0)
    assert [r.result.handle.job_id for r in Ledger(path).records()] == ["a", "b"]


def test_flipped_byte_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    for j in ("a", "b", "c"):
        ledger.append(_result(j), iteration=0)
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"1.25", b"1.35")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(StateError, match=r"ledger\.jsonl line 2: checksum mismatch"):
        Ledger(path).records()
    lines[1] = lines[1][:-5]  # a complete but truncated line is corruption, not a torn tail
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(StateError, match=r"line 2: not valid JSON"):
        Ledger(path).records()


def test_killed_writer_leaves_a_readable_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from agent.campaign.ledger import Ledger
        from oracles.base import Handle, JobStatus, Result
        ledger = Ledger(__import__("pathlib").Path({str(path)!r}))
        for i in range(3):
            result = Result(Handle("mock", f"j{{i}}", {{"a": 0.1}}), JobStatus.COMPLETED, {{"gap": 0.5}})
            ledger.append(result, iteration=0)
        with open({str(path)!r}, "ab") as fh:
            fh.write(b'{{"seq":3,"iteration":0,"time":1.0,"tag":"","res')
            fh.flush()
            os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    ledger = Ledger(path)
    assert [r.result.handle.job_id for r in ledger.records()] == ["j0", "j1", "j2"] and ledger.torn == 1
    assert ledger.append(_result("j3"), iteration=1).seq == 3
    assert len(Ledger(path).records()) == 4


def test_create_config_and_fingerprint(tmp_path: Path) -> None:
    store = CampaignStore(tmp_path / "state", "run-1")
    assert not store.exists() and not store.root.exists()
    store = _store(tmp_path)
    assert store.exists() and store.root == tmp_path / "state" / "run-1"
    assert (store.root / "config.toml").read_text() == 'material = "mos2"\nbatch = 4\n'
    assert store.load_config() == ({"material": "mos2", "batch": 4}, "f00d")
    store.check_fingerprint("f00d")
    with pytest.raises(
        StateError, match=r"run-1 was started with a different configuration \(fingerprint f00d != beef\)"
    ):
        store.check_fingerprint("beef")
    with pytest.raises(StateError, match="already exists"):
        store.create({}, "beef", "")
    (store.root / "config.json").write_text('{"config": {"materi')
    with pytest.raises(StateError, match=r"config\.json.*not valid JSON"):
        store.load_config()
    with pytest.raises(StateError, match=r"config\.json.*missing"):
        CampaignStore(tmp_path / "state", "other").load_config()


def test_inflight_round_trip_and_tamper(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.read_inflight() is None
    payload = {"iteration": 3, "phase": "submitting", "designs": [{"a": 0.1}], "tags": ["batch"], "time": 5.0}
    store.write_inflight(payload)
    assert store.read_inflight() == payload
    handles = [Handle("mock", "j9", {"a": 0.1}).to_json()]
    store.write_inflight({**payload, "phase": "submitted", "handles": handles})
    back = store.read_inflight()
    assert back is not None and back["phase"] == "submitted" and Handle.from_json(back["handles"][0]).job_id == "j9"
    path = store.root / "inflight.json"
    path.write_text(path.read_text().replace('"j9"', '"j8"'))
    with pytest.raises(StateError, match=r"inflight\.json: checksum mismatch"):
        store.read_inflight()
    path.write_text(path.read_text()[:20])
    with pytest.raises(StateError, match=r"inflight\.json.*not valid JSON"):
        store.read_inflight()
    store.clear_inflight()
    assert store.read_inflight() is None
    store.clear_inflight()  # idempotent


def test_commit_verify_and_tamper(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.last_completed() == -1
    folder = store.iteration_dir(0)
    assert folder == store.root / "iterations" / "0000" and folder.is_dir()
    (folder / "chosen.csv").write_text("a,b\n0.1,0.2\n")
    (folder / "model").mkdir()
    (folder / "model" / "weights.bin").write_bytes(bytes(range(256)))
    assert store.commit_iteration(0, {"best": 0.5}) == folder
    assert store.last_completed() == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"chosen.csv", "model/weights.bin", "metrics.json"}
    assert manifest["files"]["model/weights.bin"]["bytes"] == 256
    assert store.verify_iteration(0) == {"best": 0.5}
    assert store.iteration_file(0, "chosen.csv") == folder / "chosen.csv"
    with pytest.raises(StateError, match="not in the committed manifest"):
        store.iteration_file(0, "nope.csv")
    with pytest.raises(StateError, match="never committed"):
        store.iteration_file(1, "chosen.csv")
    with pytest.raises(StateError, match="already committed"):
        store.commit_iteration(0, {})

    data = bytearray((folder / "model" / "weights.bin").read_bytes())
    data[7] ^= 1
    (folder / "model" / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(StateError, match=r"weights\.bin: content differs"):
        store.verify_iteration(0)
    (folder / "model" / "weights.bin").unlink()
    with pytest.raises(StateError, match=r"weights\.bin: listed in .* but missing"):
        store.verify_iteration(0)


def test_corrupt_checkpoint_is_reported(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit_iteration(0, {})
    (store.root / "campaign.json").write_text('{"iteration": "zero"')
    with pytest.raises(StateError, match=r"campaign\.json.*not valid JSON"):
        store.last_completed()
    (store.root / "campaign.json").write_text('{"iteration": "zero"}')
    with pytest.raises(StateError, match=r"campaign\.json: 'iteration'"):
        store.last_completed()


def test_tampered_manifest_is_reported(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for i in (0, 1):
        (store.iteration_dir(i) / "x.txt").write_text(f"x{i}")
        store.commit_iteration(i, {"i": i})
    for i, match in ((0, r"0000/manifest\.json: checksum mismatch"), (1, r"0001/manifest\.json: does not match")):
        path = store.root / "iterations" / f"{i:04d}" / "manifest.json"
        path.write_text(path.read_text().replace('"bytes": 2', '"bytes": 3'))
        with pytest.raises(StateError, match=match):
            store.verify_iteration(i)


def test_one_run_at_a_time_and_the_lock_says_who_holds_it(tmp_path: Path) -> None:
    store = _store(tmp_path)
    other = CampaignStore(tmp_path / "state", "run-1")  # what a second `innloop run` builds
    busy = rf"'run-1' is already running \(pid {os.getpid()} on .*run\.lock"
    with store.running(), pytest.raises(StateError, match=busy), other.running():
        pass
    with other.running():  # released when the holder is done
        pass


def test_lock_of_a_killed_run_is_free_again(tmp_path: Path) -> None:
    store = _store(tmp_path)
    code = textwrap.dedent(f"""
        import os, signal
        from agent.campaign.store import CampaignStore
        with CampaignStore({str(tmp_path / "state")!r}, "run-1").running():
            os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == -signal.SIGKILL
    with store.running():  # the kernel dropped the dead process's lock
        assert "pid" in (store.root / "run.lock").read_text()


def test_temporaries_of_a_killed_writer_are_swept_but_nothing_else(tmp_path: Path) -> None:
    store = _store(tmp_path)
    folder = store.iteration_dir(0)
    left = [store.root / ".inflight.json.ab_cd123.tmp", folder / ".manifest.json.x1y2z3w4.tmp"]
    kept = [store.root / "notes.tmp", folder / ".hidden.tmp", store.root / "ledger.jsonl"]
    for p in left + kept:
        p.write_text("x")
    with store.running():
        pass
    assert [p.exists() for p in left] == [False, False]
    assert all(p.exists() for p in kept)
