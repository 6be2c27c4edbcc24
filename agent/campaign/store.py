"""Where a campaign lives on disk: ``<state>/<campaign>/`` (layout in ``state/README.md``).

The store never loses or corrupts an oracle result and lets a killed process resume:
results go to the append-only `Ledger` as they arrive; jobs are recorded in
``inflight.json`` before and after submission, so a restart re-attaches instead of paying
twice; an iteration counts as done only once its files are hashed into ``manifest.json``
and ``campaign.json`` (written last, atomically) points at it. A folder newer than that is
the iteration a killed run left half-done: the next run carries on in it (its saved
models and ``batch.csv``, re-attaching to the jobs in flight), never starting it afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.campaign.journal import FileJournal, read_state_json
from agent.campaign.ledger import Ledger, LedgerRecord, fsync_dir, seal, unseal
from agent.core.atomic import write_json, write_text
from agent.core.errors import ConfigError, StateError

__all__ = ["CAMPAIGN_NAME", "CampaignStore", "Ledger", "LedgerRecord", "check_campaign_name"]

CAMPAIGN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")  # tempfile.mkstemp names of `agent.core.atomic`


def check_campaign_name(name: str) -> str:
    """Return ``name`` if it is a safe single folder name (no paths, no leading dot or dash)."""
    if not isinstance(name, str) or not CAMPAIGN_NAME.fullmatch(name):
        raise ConfigError(
            f"campaign name {name!r} is not usable: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _hash_file(path: Path, *, sync: bool = False) -> tuple[str, int]:
    """SHA-256 and size of a file; ``sync`` flushes it too: a commit must not point at cached data."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
        if sync:
            with contextlib.suppress(OSError):  # a few file systems refuse fsync on a read-only handle
                os.fsync(fh.fileno())
    return digest.hexdigest(), size


class CampaignStore(FileJournal):
    """One campaign's folder: config, committed iterations, and (as the `FileJournal` it is)
    the ledger and the jobs in flight."""

    def __init__(self, state_dir: Path | str, name: str) -> None:
        self.name = check_campaign_name(name)
        self.root = Path(state_dir) / self.name
        super().__init__(self.root, create=False)
        self._verified: dict[int, dict[str, Any]] = {}  # iteration -> its manifest's files

    # -- one run at a time --------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Hold ``run.lock`` while this process runs the campaign (released when it exits or dies).

        Two runs of one campaign at once would submit the same batch twice and interleave
        their writes, so a second one is refused with who holds the lock. Temporary files
        left by a run killed between a write and its rename are removed once it is held.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "run.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "a process"
                raise StateError(
                    f"campaign {self.name!r} is already running ({holder}; lock {path}): two runs at once would "
                    "pay for the same jobs twice; wait for it to finish or stop it, then run again"
                ) from None
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
            self.sweep_temporaries()
            yield
        finally:
            os.close(fd)

    def sweep_temporaries(self) -> list[Path]:
        """Remove atomic-write temporaries (``.NAME.XXXXXXXX.tmp``) a killed writer left; call under `running`."""
        gone = [p for p in self.root.rglob(".*.tmp") if p.is_file() and _TEMPORARY.fullmatch(p.name)]
        for p in gone:
            p.unlink(missing_ok=True)
        return gone

    # -- configuration ---------------------------------------------------------------

    @property
    def _config_path(self) -> Path:
        return self.root / "config.json"

    def exists(self) -> bool:
        return self._config_path.is_file()

    def create(self, config: dict[str, Any], fingerprint: str, source_text: str) -> None:
        """Start a new campaign; refuse an existing one so a typo never mixes two campaigns."""
        if self.exists():
            raise StateError(f"{self.root} already exists; resume it or use another campaign name")
        self.root.mkdir(parents=True, exist_ok=True)
        write_text(self.root / "config.toml", source_text)
        write_json(self._config_path, {"config": config, "fingerprint": fingerprint}, indent=2)  # last: marks it
        fsync_dir(self.root)
        fsync_dir(self.root.parent)

    def load_config(self) -> tuple[dict[str, Any], str]:
        data = read_state_json(self._config_path, "the campaign configuration")
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise StateError(f"{self._config_path}: expected an object with a 'config' object")
        if not isinstance(data.get("fingerprint"), str):
            raise StateError(f"{self._config_path}: 'fingerprint' is missing or not a string")
        return data["config"], data["fingerprint"]

    def check_fingerprint(self, fingerprint: str) -> None:
        """Refuse to resume with another configuration: its results would not be comparable."""
        _, stored = self.load_config()
        if stored != fingerprint:
            raise StateError(
                f"{self.root} was started with a different configuration (fingerprint {stored} != {fingerprint}); "
                "use another campaign name or the original config"
            )

    # -- iterations ------------------------------------------------------------------

    @property
    def _campaign_path(self) -> Path:
        return self.root / "campaign.json"

    def _iteration_path(self, i: int) -> Path:
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise StateError(f"iteration must be a non-negative integer, got {i!r}")
        return self.root / "iterations" / f"{i:04d}"

    def iteration_dir(self, i: int) -> Path:
        path = self._iteration_path(i)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def commit_iteration(self, i: int, metrics: dict[str, Any]) -> Path:
        """Seal iteration ``i``: metrics, then a manifest of every file, then the checkpoint pointer."""
        self._iteration_path(i)
        last = self.last_completed()
        if i <= last:
            raise StateError(f"{self._campaign_path}: iteration {i} is already committed (last is {last})")
        folder = self.iteration_dir(i)
        write_json(folder / "metrics.json", metrics, indent=2)
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and rel != "manifest.json":
                digest, size = _hash_file(path, sync=True)
                files[rel] = {"sha256": digest, "bytes": size}
        for sub in {folder, *(p.parent for p in folder.rglob("*"))}:
            fsync_dir(sub)
        manifest_path = write_json(folder / "manifest.json", seal({"iteration": i, "files": files}), indent=1)
        fsync_dir(folder)
        manifest_sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
        write_json(self._campaign_path, {"iteration": i, "time": time.time(), "manifest_sha256": manifest_sha})
        fsync_dir(self.root)
        self._verified.pop(i, None)
        return folder

    def _checkpoint(self) -> dict[str, Any] | None:
        if not self._campaign_path.exists():
            return None
        data = read_state_json(self._campaign_path, "the checkpoint")
        it = data.get("iteration") if isinstance(data, dict) else None
        if not isinstance(it, int) or isinstance(it, bool) or it < 0:
            raise StateError(f"{self._campaign_path}: 'iteration' is missing or not a non-negative integer")
        if not isinstance(data.get("manifest_sha256"), str):
            raise StateError(f"{self._campaign_path}: 'manifest_sha256' is missing or not a string")
        return dict(data)

    def last_completed(self) -> int:
        """The last committed iteration, -1 for a campaign that has none yet."""
        checkpoint = self._checkpoint()
        return -1 if checkpoint is None else int(checkpoint["iteration"])

    def verify_iteration(self, i: int) -> dict[str, Any]:
        """Re-hash every file a committed iteration's manifest lists; return its metrics."""
        folder = self._iteration_path(i)
        checkpoint = self._checkpoint()
        if checkpoint is None or i > checkpoint["iteration"]:
            raise StateError(f"{folder}: iteration {i} was never committed")
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise StateError(
                f"{self._campaign_path}: says iteration {checkpoint['iteration']} is committed, "
                f"but {manifest_path} is missing"
            )
        if i == checkpoint["iteration"]:
            try:
                actual = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
            except OSError as exc:
                raise StateError(f"{manifest_path}: cannot read the manifest: {exc}") from None
            if actual != checkpoint["manifest_sha256"]:
                raise StateError(f"{manifest_path}: does not match the checksum in {self._campaign_path}")
        manifest = unseal(read_state_json(manifest_path, "the manifest"), str(manifest_path))
        files = manifest.get("files")
        if manifest.get("iteration") != i or not isinstance(files, dict) or "metrics.json" not in files:
            raise StateError(f"{manifest_path}: not the manifest of iteration {i}, or it lists no metrics.json")
        base = folder.resolve()
        for rel, entry in files.items():
            path = folder / rel
            if not path.resolve().is_relative_to(base) or not isinstance(entry, dict):
                raise StateError(f"{manifest_path}: bad entry {rel!r}")
            if not path.is_file():
                raise StateError(f"{path}: listed in {manifest_path} but missing")
            digest, size = _hash_file(path)
            if (digest, size) != (entry.get("sha256"), entry.get("bytes")):
                raise StateError(f"{path}: content differs from {manifest_path} (sha256 or size mismatch)")
        metrics = read_state_json(folder / "metrics.json", "the iteration's metrics")
        if not isinstance(metrics, dict):
            raise StateError(f"{folder / 'metrics.json'}: expected a JSON object")
        self._verified[i] = files
        return metrics

    def iteration_file(self, i: int, name: str) -> Path:
        """A file of a committed, verified iteration (verified once per store object)."""
        if i not in self._verified:
            self.verify_iteration(i)
        if name not in self._verified[i]:
            raise StateError(f"{self._iteration_path(i)}: {name!r} is not in the committed manifest")
        return self._iteration_path(i) / name
