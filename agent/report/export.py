"""Section 6 and file output: the best hits (as CIF/POSCAR for a crystal), and atomic writes.

Every file of a report is written through `agent.core.atomic`, so a reader (or the Prefect
UI following a link) sees a whole file or the previous one, never half of one.
pymatgen writes structures to a path of its own choosing, so they are written into a
scratch folder first and moved into place file by file. A material whose designs are not
crystals gets the same table of best hits, in real values, without files.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from agent.core.atomic import write_bytes, write_text
from agent.core.materials import Material
from agent.core.structures import write_structures
from agent.report.inputs import Target

__all__ = ["best_hit_table", "best_hits", "export_structures", "write_csv"]


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_text(path, frame.to_csv(index=False, float_format="%.6g"))


def best_hits(hits: pd.DataFrame, target: Target, target_name: str, n: int) -> pd.DataFrame:
    """The ``n`` measured hits closest to the target, closest first: to the value of
    ``value ± window``; inside a range every hit is at distance 0 and keeps the ledger's order."""
    if not len(hits):
        return hits
    order = np.argsort(target.range.distance(hits[target_name].to_numpy(float)), kind="stable")
    return hits.iloc[order[:n]].reset_index(drop=True)


def best_hit_table(
    material: Material, targets: Sequence[Target], hits: Sequence[pd.DataFrame], n: int, extra: Sequence[str] = ()
) -> pd.DataFrame:
    """The ``n`` best hits per target: ``target, rank``, the design columns in real values
    (category names, integers), the measured value and the ``extra`` measured values (the
    campaign's constrained properties)."""
    space, name = material.space, material.target
    parts = []
    for t, frame in zip(targets, hits):
        best = best_hits(frame, t, name, n)
        if len(best):
            part = best[[*space.names, name, *extra]].copy()
            part.insert(0, "rank", np.arange(1, len(best) + 1))
            part.insert(0, "target", t.key)
            parts.append(part)
    cols = ["target", "rank", *space.names, name, *extra]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def export_structures(
    material: Material,
    targets: Sequence[Target],
    hits: Sequence[pd.DataFrame],
    folder: Path,
    n: int,
    extra: Sequence[str] = (),
) -> tuple[pd.DataFrame, list[Path]]:
    """CIF and POSCAR of the ``n`` best hits per target into ``folder``; the table listing them.

    Table columns: ``target, rank``, the design columns, the measured value, the ``extra``
    measured values (constrained properties), ``cif``, ``poscar`` (paths relative to the report folder).
    """
    space, name = material.space, material.target
    folder.mkdir(parents=True, exist_ok=True)
    rows, written = [], []
    for t, frame in zip(targets, hits):
        best = best_hits(frame, t, name, n)
        if not len(best):
            continue
        structures = [material.builder()(x) for x in space.from_frame(best[space.names])]
        stem = f"target-{t.range.slug()}{'eV' if t.unit == 'eV' else ''}-hit"  # file-safe: no other unit
        with tempfile.TemporaryDirectory(dir=folder, prefix=".tmp-") as tmp:
            paths = write_structures(structures, tmp, stem_prefix=stem)
            final = [write_bytes(folder / p.name, p.read_bytes()) for p in paths]
        written += final
        for k in range(len(best)):
            cif, poscar = final[2 * k], final[2 * k + 1]
            rows.append(
                {
                    "target": t.key,
                    "rank": k + 1,
                    **{c: float(best.iloc[k][c]) for c in space.names},
                    name: float(best.iloc[k][name]),
                    **{c: float(best.iloc[k][c]) for c in extra},
                    "cif": f"{folder.name}/{cif.name}",
                    "poscar": f"{folder.name}/{poscar.name}",
                }
            )
    cols = ["target", "rank", *space.names, name, *extra, "cif", "poscar"]
    return pd.DataFrame(rows, columns=cols), written


def clear_scratch(folder: Path) -> None:
    """Remove scratch folders a killed run left behind (never the report's files)."""
    for p in folder.glob(".tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
