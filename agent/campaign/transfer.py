"""Loading a campaign's ``[transfer]`` source, and what it says about it.

`load_transfer` reads the source's rows (a bundled dataset, or the completed results of
another campaign's ledger), puts them in the shared unit box (each design in *its own*
space's unit box, columns in this campaign's parameter order; `agent.campaign.transfer_config`
checked the spaces match) and trains the source's deep ensemble once. The ensemble is
cached by `agent.design.trained.ModelCache` under ``$INNLOOP_CACHE_DIR`` or
``<state>/cache/``, keyed by a fingerprint of the rows and the settings, with a fixed
seed: it belongs to the source, not to one campaign, so every campaign (and every seed of
a benchmark) with the same source and model settings shares one file, and a resumed run
loads exactly the model the first run trained. How the models use it:
`agent.models.transfer`. The source never enters this campaign's ledger, its hits or its
oracle calls: it reaches planning only as `agent.campaign.plan.PlanInputs.source`.

A ledger source is *pinned* (`pinned_rows`): the other campaign may go on measuring, and
a source that grew between two runs of this one would change its rows, its model, the map
and the replay, so a resumed campaign would plan differently from an uninterrupted one.
Its first run records in this campaign's folder (``transfer.json``, written atomically
beside ``config.json``) the highest ledger ``seq`` it read and a fingerprint of the rows;
every later run reads only the records up to that ``seq`` and refuses, in one line, when
they no longer give those rows (the source's ledger was rewritten). A bundled dataset is
pinned the same way by its row count: a table that grows by measuring more of its draw (the
WS2 table) keeps its first rows, so a resumed campaign reads those and nothing more, and
one whose first rows changed (another version of the data) is refused.

A report (``read_only``) writes nothing and trains nothing: it takes the source model from
the cache or raises `SourceNotCached`, so ``innloop report`` never spends minutes training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from agent.campaign.config import CampaignConfig
from agent.campaign.journal import read_state_json
from agent.campaign.store import CampaignStore
from agent.campaign.transfer_config import TransferSpec, ledger_store, material_of
from agent.core.atomic import write_json
from agent.core.errors import DataError, InnloopError, StateError
from agent.core.materials.datasets import load_dataset
from agent.core.paths import CACHE_ENV, cache_dir
from agent.core.space import DesignSpace
from agent.design.trained import ModelCache, fingerprint
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from agent.models.transfer import TransferSource

__all__ = [
    "CACHE_ENV",
    "PIN_FILE",
    "SOURCE_SEED",
    "SourceNotCached",
    "SourceRows",
    "load_transfer",
    "pinned_rows",
    "source_rows",
    "transfer_line",
]

SOURCE_SEED = 0  # the source model's seed: shared by every campaign that uses the source
PIN_FILE = "transfer.json"  # in the campaign's folder: the ledger source as its first run read it


class SourceNotCached(InnloopError):
    """The source model is not in the cache, and the caller (a report) may not train it."""


@dataclass(frozen=True)
class SourceRows:
    """The source's designs ``U (n, d)`` in the shared unit box, values ``y (n,)``, the
    material it measured and, for a ledger, the highest ``seq`` read (None for a dataset)."""

    U: np.ndarray
    y: np.ndarray
    material: str
    seq: int | None = None

    def fingerprint(self) -> str:
        return fingerprint(self.U, self.y)


def source_rows(spec: TransferSpec, space: DesignSpace, upto: int | None = None) -> SourceRows:
    """The source's rows in ``space``'s column order; of a ledger, its completed results
    among the records with ``seq <= upto`` (all of them without ``upto``)."""
    if spec.source is not None:
        obs = load_dataset(spec.source).deduplicate("exact")
        U = obs.U[:, _columns(obs.space, space)]
        return SourceRows(U, obs.y, spec.material().name)
    store = ledger_store(Path(str(spec.ledger)))
    raw, _ = store.load_config()
    mat = material_of(raw)
    records = [r for r in store.ledger.records() if upto is None or r.seq <= upto]
    done = [(r.result.handle.design, (r.result.values or {}).get(mat.target)) for r in records if r.result.ok]
    done = [(design, v) for design, v in done if v is not None and np.isfinite(v)]
    if not done:
        raise DataError(f"transfer source {spec.label}: its ledger holds no completed {mat.target!r} results")
    src = mat.space
    U = src.to_unit(src.from_rows([design for design, _ in done], source=spec.label))
    y = np.array([v for _, v in done], dtype=np.float64)
    return SourceRows(U[:, _columns(src, space)], y, mat.name, max(r.seq for r in records))


def _columns(source: DesignSpace, target: DesignSpace) -> list[int]:
    """Unit-box columns of ``source`` in ``target``'s parameter order (matched by name)."""
    start = dict(zip(source.names, np.cumsum([0] + [p.width for p in source.parameters])))
    widths = {p.name: p.width for p in source.parameters}
    return [int(start[n]) + k for n in target.names for k in range(widths[n])]


def pinned_rows(spec: TransferSpec, space: DesignSpace, folder: Path, *, pin: bool = True) -> SourceRows:
    """The source's rows as campaign ``folder``'s first run read them (see the module's words on pinning).

    A source without a pin yet is read whole and, with ``pin``, pinned (only in a folder
    that holds a campaign). Raises `StateError` when the pinned records (a ledger's, up to
    the pinned ``seq``; a dataset's first rows) no longer give the pinned rows, or the pin
    itself is damaged.
    """
    path = Path(folder) / PIN_FILE
    if not path.exists():
        rows = source_rows(spec, space)
        if pin and (Path(folder) / "config.json").is_file():
            where = {"ledger": spec.ledger, "seq": rows.seq} if spec.ledger is not None else {"dataset": spec.source}
            write_json(path, where | {"rows": len(rows.y), "fingerprint": rows.fingerprint()}, indent=2)
        return rows
    seq, n, key = _read_pin(path, ledger=spec.ledger is not None)
    rows = source_rows(spec, space, upto=seq)
    if spec.ledger is None:  # a dataset: its first n rows, however many it holds now
        rows = SourceRows(rows.U[:n], rows.y[:n], rows.material)
    if (len(rows.y), rows.fingerprint()) != (n, key):
        what, fix = (
            (f"its results up to seq {seq} are", "restore that ledger")
            if spec.ledger is not None
            else (f"its first {n} rows are", "install the innloop version that shipped them")
        )
        raise StateError(
            f"transfer source {spec.label} was rewritten: {what} not those this campaign started with "
            f"({n} rows, fingerprint {key}; now {len(rows.y)} rows, {rows.fingerprint()}, pinned in {path}); "
            f"{fix}, or start another campaign"
        )
    return rows


def _read_pin(path: Path, *, ledger: bool) -> tuple[int | None, int, str]:
    """(seq, rows, fingerprint) of a pin; ``seq`` only for a ledger source (None for a dataset)."""
    data = read_state_json(path, "the transfer source's pin")
    if isinstance(data, dict):
        seq, n, key = data.get("seq"), data.get("rows"), data.get("fingerprint")
        if (_count(seq) or not ledger) and _count(n) and isinstance(key, str):
            return (seq if ledger else None), n, key
    wanted = "'seq' and 'rows' (non-negative integers)" if ledger else "'rows' (a non-negative integer)"
    raise StateError(f"{path}: expected {wanted} and 'fingerprint' (a string)")


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_transfer(config: CampaignConfig, state_dir: str | Path, *, read_only: bool = False) -> TransferSource | None:
    """The campaign's source with its trained (or cached) ensemble; None without ``[transfer]``.

    A ledger source is read as pinned in the campaign's folder (`pinned_rows`). ``read_only``
    (a report): pin nothing, train nothing; a source model not in the cache raises `SourceNotCached`.
    """
    spec = config.transfer
    if spec is None:
        return None
    folder = CampaignStore(state_dir, config.name).root
    rows = pinned_rows(spec, config.design_material().space, folder, pin=not read_only)
    m = config.models
    settings = EnsembleConfig(
        members=m.members, epochs=m.surrogate_epochs, warm_epochs=m.surrogate_warm_epochs, seed=SOURCE_SEED
    )
    cache = ModelCache(cache_dir(state_dir))
    if read_only:
        path = cache.surrogate_path(rows.material, rows.U, rows.y, settings)
        if not path.exists():
            raise SourceNotCached(f"the model of transfer source {spec.label} is not in the cache ({path})")
        return TransferSource.of(spec.label, rows.U, rows.y, SurrogateEnsemble.load(path))
    groups = np.unique(rows.U + 0.0, axis=0, return_inverse=True)[1].reshape(-1)  # repeated designs stay together
    model, _, _ = cache.surrogate(rows.material, rows.U, rows.y, groups, settings)
    return TransferSource.of(spec.label, rows.U, rows.y, model)


def transfer_line(record: dict[str, Any] | None) -> str | None:
    """One line on what a campaign learned from its source (an iteration's ``fit.transfer``)."""
    if not record:
        return None
    return (
        f"transfer: learned from {record['source']} ({record['rows']} rows), mapped as "
        f"{record['offset']:+.3f} + {record['scale']:.3f} × source (fitted on {record['fitted_on']} results), "
        f"{record['replay']} source rows replayed ({record['replay_share']:.0%} of the networks' training)"
    )
