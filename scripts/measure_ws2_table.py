"""Measure the WS2 replay table with real GPAW: ``python scripts/measure_ws2_table.py``.

Why a table of our own. A campaign on a material nobody has measured is benchmarked
against ground truth only if that truth exists: this script draws designs uniformly from
WS2's valid strain-and-field space (seed 0, `DesignSpace.sample_unit`) and measures every
one with the `gpaw` oracle under one fixed setting set (`TABLE_SETTINGS`), so the `table`
oracle can replay them and every method meets the same answers.

Resumable by the oracle's own re-attach. The designs are drawn and written first
(``designs.csv``); all of them are queued at once in the work folder (one job folder
each; the oracle starts at most ``--parallel`` at a time) and their handles saved
(``handles.json``). A rerun reads the handles back, or, if the run died between queueing
and saving, finds the queued jobs again (`GpawOracle.adopt`); it queues again the jobs
whose process ended without an answer (killed with the script, a reboot) and polls on.
No answer is ever paid for twice. Growing the table (``--n`` larger) draws the same
first designs again and queues only the new ones. A new work folder starts from the shipped
table (`seed_from_shipped`): its designs are the draw's first ones and are not measured
again, so the table grows on any machine with this checkout, the old work folder gone.

Every poll rewrites ``ws2_gpaw_table.csv`` (design columns, ``gap`` and ``strain_energy``,
both on GPAW's scale, ``energy`` per formula unit) with what has finished, and
``failures.csv`` with the designs GPAW gave no answer for (``wall_s``: the job's own
seconds), and prints the progress. The
result goes to ``agent/data/ws2/`` with ``--ship`` once every design has finished, or with
``--ship-measured`` at any time (the longest finished prefix of the draw, `ship_prefix`;
it reads the files a running measurement writes and may run beside it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from agent.core.atomic import write_json, write_text
from agent.core.materials import get_material
from oracles.base import ErrorClass, Handle, Result
from oracles.gpaw import GpawOracle

# The table's GPAW settings: production's PBE with a lower cutoff, a 6×6×1 mesh (it holds K,
# where the band edges sit) and a looser SCF stop. Unstrained WS2 (a 3.18 Å, c 12.32 Å, no
# field): 1.849 eV against 1.842 eV at production's 350 eV, 9×9×1; 4-7 s a design on one core
# against 15-28 s (measured while choosing, `--check` repeats it).
TABLE_SETTINGS: dict[str, Any] = {
    "ecut_eV": 250.0,
    "kpts": [6, 6, 1],
    "convergence": {"density": 1e-3, "eigenstates": 1e-6},
}
PRODUCTION_SETTINGS: dict[str, Any] = {"ecut_eV": 350.0, "kpts": [9, 9, 1]}
DEFAULT_DIR = Path("ws2-table")
SHIP_DIR = Path(__file__).resolve().parents[1] / "agent" / "data" / "ws2"


def draw(n: int, seed: int = 0) -> np.ndarray:
    """``n`` physical WS2 designs ``(n, 7)`` uniform over the valid space; the first ``m``
    are the same for every ``n >= m``."""
    space = get_material("ws2").space
    rng = np.random.default_rng(seed)
    U = np.vstack([space.sample_unit(rng, 100) for _ in range(-(-n // 100))])[:n]
    return space.from_unit(U)


def oracle(
    folder: Path, parallel: int, settings: dict[str, Any] = TABLE_SETTINGS, command: list[str] | None = None
) -> GpawOracle:
    return GpawOracle(
        workdir=folder / "jobs",
        command=command,
        material="ws2",
        settings=settings,
        max_parallel=parallel,
        walltime_s=1800,
        memory_gb=4,
        calibration=None,
    )


def handles_for(gpaw: GpawOracle, folder: Path, X: np.ndarray) -> list[Handle]:
    """One handle per design: those saved, the queued jobs of a run that died before saving
    them, and new jobs for the rest; saved before returning."""
    path = folder / "handles.json"
    saved = [Handle.from_json(h) for h in json.loads(path.read_text())] if path.exists() else []
    if len(saved) < len(X):
        rest = X[len(saved) :]
        found = gpaw.adopt(rest, since=0.0)
        missing = [i for i, h in enumerate(found) if h is None]
        fresh = iter(gpaw.submit(rest[missing]) if missing else [])
        saved = saved + [h if h is not None else next(fresh) for h in found]
        write_json(path, [h.to_json() for h in saved], indent=None)
    # Jobs the machinery lost (killed with this script, the machine rebooted) never gave an
    # answer: queue them again, once per run. A physics failure is an answer and stays.
    lost = [i for i, r in enumerate(gpaw.results(saved)) if r.error_class is ErrorClass.INFRASTRUCTURE]
    if lost:
        # a run killed after queueing them again but before saving: adopt those, queue the rest
        since = min(saved[i].submitted_at for i in lost) + 1e-3
        found = gpaw.adopt(X[lost], since=since)
        missing = [i for i, h in zip(lost, found, strict=True) if h is None]
        fresh = iter(gpaw.submit(X[missing]) if missing else [])
        for i, h in zip(lost, found, strict=True):
            saved[i] = h if h is not None else next(fresh)
        write_json(path, [h.to_json() for h in saved], indent=None)
        print(f"queued {len(lost)} jobs again whose process ended without an answer")
    return saved[: len(X)]


def read_rows(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The CSV at ``path``; an empty frame (``columns``) when it is missing or has no header
    (the script writes an empty failure list as one line break)."""
    if path.is_file() and path.stat().st_size > 1:
        return pd.read_csv(path)
    return pd.DataFrame(columns=columns)


def draw_places(designs: np.ndarray, frame: pd.DataFrame) -> np.ndarray | None:
    """Each of ``frame``'s designs' row in ``designs`` ``(n, 7)`` (physical), ``(m,)``; None
    when one of them is not among ``designs``."""
    space = get_material("ws2").space
    if frame.empty:
        return np.zeros(0, dtype=np.int64)
    dist, idx = cKDTree(space.to_unit(designs)).query(space.to_unit(space.from_frame(frame[space.names])))
    return None if (dist > 1e-6).any() else np.asarray(idx, dtype=np.int64)


def seed_from_shipped(
    folder: Path, ship_dir: Path, X: np.ndarray, use_shipped: bool = True
) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    """The designs already answered in ``ship_dir``: ``(k, rows, failures)``, the first ``k``
    designs of the draw ``X`` ``(n, 7)``, which this folder does not measure again.

    Why. Shipped rows are answers paid for; a new work folder (another machine, the old one
    lost) would otherwise measure them all again. The split is written once into the folder
    (``seed.json`` and copies of the rows), so later shipments, which grow ``ship_dir`` with
    this folder's own rows, never move it. A folder that measured without a seed keeps
    measuring every design (``k = 0``), as does a new one with ``use_shipped`` off. Refused
    in one line: a shipped table under other settings, one that is not a prefix of this
    draw, one longer than ``X``.
    """
    seed = folder / "seed.json"
    empty = pd.DataFrame()
    if seed.is_file():
        k = int(json.loads(seed.read_text())["designs"])
        if k > len(X):
            raise SystemExit(f"{folder} starts after design {k} of the draw: ask --n {k + 1} or more")
        if k == 0:
            return 0, empty, empty
        return k, pd.read_csv(folder / "seeded_rows.csv"), read_rows(folder / "seeded_failures.csv")
    shipped = ship_dir / "ws2_gpaw_table.csv"
    jobs = folder / "jobs"
    # a folder that queued jobs measures every design (a run may have died before saving
    # their handles: the jobs are adopted, never queued again)
    queued = (folder / "handles.json").is_file() or (jobs.is_dir() and any(jobs.iterdir()))
    if not use_shipped or queued or not shipped.is_file():
        write_json(seed, {"designs": 0}, indent=1)  # decided once: later runs read it
        return 0, empty, empty
    if not (ship_dir / "settings.json").is_file():
        raise SystemExit(f"{ship_dir}: a table without its settings.json; use a folder of its own")
    settings = json.loads((ship_dir / "settings.json").read_text()).get("settings")
    if settings != TABLE_SETTINGS:
        raise SystemExit(f"{ship_dir}: shipped under other settings ({settings}); use a folder of its own")
    rows, failures = pd.read_csv(shipped), read_rows(ship_dir / "failures.csv")
    k = len(rows) + len(failures)
    if k > len(X):
        raise SystemExit(f"{ship_dir} holds {k} designs of the draw already: ask --n {k + 1} or more")
    found = [draw_places(X[:k], frame) for frame in (rows, failures)]
    places = [p for p in found if p is not None]
    if len(places) < len(found) or len(set(np.concatenate(places).tolist())) != k:
        raise SystemExit(f"{ship_dir}: the shipped designs are not the first {k} of this draw; was the draw changed?")
    write_text(folder / "seeded_rows.csv", rows.to_csv(index=False, float_format="%.10g"))
    write_text(folder / "seeded_failures.csv", failures.to_csv(index=False))
    write_json(seed, {"designs": k, "from": str(ship_dir)}, indent=1)
    return k, rows, failures


def _stack(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """``first`` then ``second``; an empty one adds nothing."""
    frames = [f for f in (first, second) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else second


def same_reference(seeded: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``new`` rows with their strain energy taken against the seeded rows' reference.

    Why. This folder's oracle measured the unstrained reference again; under the same
    settings it gives the same energy (seen: the same to 1e-8 eV), but on another machine
    the loose SCF stop may move it a little, and one table keeps one reference: every row's
    ``energy - strain_energy`` is the same number."""
    if new.empty or seeded.empty:
        return new
    reference = float((seeded["energy"] - seeded["strain_energy"]).median())
    return new.assign(strain_energy=new["energy"] - reference)


def table(space_names: list[str], results: list[Result]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The finished rows and the failed designs (with the oracle's message)."""
    rows, failed = [], []
    for r in results:
        if r.ok and r.values is not None:
            wall = (r.provenance or {}).get("wall_s", np.nan)
            values = {k: r.values.get(k, np.nan) for k in ("gap", "strain_energy", "energy")}
            rows.append(r.handle.design | values | {"wall_s": wall})
        elif r.status.terminal:
            cls = r.error_class.value if r.error_class is not None else ""
            failed.append(r.handle.design | {"status": r.status.value, "error_class": cls, "message": r.message})
    columns = [*space_names, "gap", "strain_energy", "energy", "wall_s"]
    return pd.DataFrame(rows, columns=columns), pd.DataFrame(failed)


def main(argv: list[str] | None = None, ship_dir: Path = SHIP_DIR) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="designs in the table")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="work folder (jobs, handles, the table)")
    ap.add_argument("--parallel", type=int, default=2, help="GPAW jobs at once")
    ap.add_argument("--poll", type=float, default=10.0, help="seconds between polls")
    ap.add_argument("--command", nargs="+", help="each job's argv prefix (default: python -m oracles.gpaw_job)")
    ap.add_argument(
        "--no-shipped", action="store_true", help="a new folder measures every design, the shipped ones too"
    )
    ap.add_argument("--ship", action="store_true", help="copy the finished table into agent/data/ws2/")
    ap.add_argument(
        "--ship-measured",
        action="store_true",
        help="measure nothing: copy the longest finished prefix of the draw into agent/data/ws2/ now",
    )
    args = ap.parse_args(argv)
    folder = args.dir.resolve()
    space = get_material("ws2").space
    if args.ship_measured:
        rows, failures = ship_prefix(folder, ship_dir)
        print(f"shipped the first {rows + failures} designs of the draw: {rows} rows, {failures} failed")
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    X = draw(args.n)
    write_text(folder / "designs.csv", space.to_frame(X).to_csv(index=False))
    write_json(folder / "settings.json", {"material": "ws2", "settings": TABLE_SETTINGS, "seed": 0}, indent=1)
    k, seeded, seeded_failed = seed_from_shipped(folder, ship_dir, X, use_shipped=not args.no_shipped)
    if k:
        print(f"the first {k} designs are answered in {ship_dir}: measuring designs {k + 1}-{len(X)}")
    gpaw = oracle(folder, args.parallel, command=args.command)
    handles = handles_for(gpaw, folder, X[k:])
    start = time.time()
    while True:
        results = gpaw.results(handles)
        done, failed = table(space.names, results)
        if k:  # empty frames left out: their object columns would turn the floats into objects
            done = _stack(seeded, same_reference(seeded, done))
            failed = _stack(seeded_failed, failed)
        write_text(folder / "ws2_gpaw_table.csv", done.to_csv(index=False, float_format="%.10g"))
        write_text(folder / "failures.csv", failed.to_csv(index=False))
        finished = len(done) + len(failed)
        print(f"{time.strftime('%H:%M:%S')} {finished}/{len(X)} ({len(failed)} failed), {time.time() - start:.0f} s")
        if finished == len(X):
            break
        time.sleep(args.poll)
    if args.ship:
        ship_prefix(folder, ship_dir)
    return 0


def ship_prefix(folder: Path, ship_dir: Path) -> tuple[int, int]:
    """Copy the table's longest finished prefix of the draw into ``ship_dir``: (rows, failures).

    Why a prefix. The first ``k`` designs of a uniform draw are a uniform sample; the rows
    finished so far are not quite (a slow job is more often still running), so a table
    shipped while measuring goes on stops at the first design without an answer. A design
    whose job the machinery lost (``error_class`` infrastructure) has no answer yet: the
    next run queues it again. Reads only the files a running measurement rewrites; never
    touches its jobs. Refuses to ship fewer rows than ``ship_dir`` holds already.
    """
    space = get_material("ws2").space
    need = [folder / name for name in ("designs.csv", "ws2_gpaw_table.csv", "failures.csv", "settings.json")]
    if missing := [p.name for p in need if not p.is_file()]:
        raise SystemExit(f"{folder}: no table measured here ({', '.join(missing)} missing)")
    designs, done = space.from_frame(pd.read_csv(need[0])), pd.read_csv(need[1])
    failed = read_rows(need[2], columns=space.names)
    if "error_class" in failed:  # lost by the machinery: queued again, not an answer
        failed = failed[failed["error_class"].fillna("") != ErrorClass.INFRASTRUCTURE.value]

    def draw_order(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """``frame``'s rows sorted by their design's place in the draw, and those places."""
        places = draw_places(designs, frame)
        if places is None:
            raise SystemExit(f"{folder}: a finished row is not among designs.csv; was the draw changed?")
        order = np.argsort(places, kind="stable")
        return frame.iloc[order], places[order]

    (rows, done_idx), (lost, failed_idx) = draw_order(done), draw_order(failed)
    finished = np.zeros(len(designs) + 1, dtype=bool)
    finished[done_idx] = finished[failed_idx] = True
    k = int(np.argmin(finished))  # the first design without an answer (the sentinel if every one has)
    rows, lost = rows[done_idx < k], lost[failed_idx < k]
    shipped = ship_dir / "ws2_gpaw_table.csv"
    before = len(pd.read_csv(shipped)) if shipped.is_file() else 0
    if len(rows) == 0 or len(rows) < before:
        raise SystemExit(f"{folder}: its finished prefix has {len(rows)} rows, {shipped} holds {before}: not shipped")
    text = readme(rows, len(lost), k)
    ship_dir.mkdir(parents=True, exist_ok=True)
    write_json(ship_dir / "settings.json", json.loads(need[3].read_text()), indent=1)
    write_text(ship_dir / "failures.csv", lost.to_csv(index=False))
    write_text(shipped, rows.to_csv(index=False, float_format="%.10g"))
    write_text(ship_dir / "README.md", text)
    return len(rows), len(lost)


def readme(rows: pd.DataFrame, failures: int, drawn: int) -> str:
    """The shipped table's README, its figures computed from ``rows`` (written with every
    shipment, so the words and the file never disagree)."""
    gap, wall, se = rows["gap"], rows["wall_s"], rows["strain_energy"]
    windows = ", ".join(f"{int(((gap - t).abs() <= 0.1).sum())} within ±0.1 eV of {t:g} eV" for t in (0.5, 1.0, 1.5))
    return README.format(
        rows=f"{len(rows):,}",
        drawn=f"{drawn:,}",
        failures=failures,
        metal=round(100 * float((gap <= 0).mean())),
        gap_max=f"{gap.max():.2f}",
        se_min=f"{se.min():.2f}",
        se_median=f"{se.median():.2f}",
        se_max=f"{se.max():.0f}",
        windows=windows,
        hours=f"{wall.sum() / 3600:.1f}",
        median=f"{wall.median():.0f}",
        paused=int((wall > 10 * wall.median()).sum()),
    )


README = """# Monolayer WS2 band gaps and strain energies under strain and electric field (GPAW)

`ws2_gpaw_table.csv`: {rows} real density-functional-theory calculations of monolayer
2H-WS2, one per row, made for innloop by `scripts/measure_ws2_table.py` through the `gpaw`
oracle. Each row is a design point (strain and field) with the band gap GPAW computed for
it, the total energy and the strain energy.

| column | meaning | unit | range here |
|---|---|---|---|
| a, b, c | lattice constants (strained) | Å | ±20 % around a = b = 3.18, c = 12.32 |
| alpha, beta, gamma | lattice angles (shear) | degree | ±20 % around 90, 90, 120 |
| efield | external field along the layer normal | V/Å | -1 … 1 |
| gap | band gap, GPAW's own scale (no calibration) | eV | 0 … {gap_max} |
| strain_energy | energy per formula unit less the unstrained cell's | eV | {se_min} … {se_max} (median {se_median}) |
| energy | total energy per formula unit | eV | |
| wall_s | the job's own seconds on one core | s | |

**Designs.** Drawn uniformly from WS2's valid design space (`DesignSpace.sample_unit`,
seed 0, 100 at a time; the MX2 family's cell and vacuum rules apply). The file holds the
first {drawn} designs of that draw, every one with an answer or in `failures.csv` (the
designs GPAW gave no answer for: {failures} designs), so it is itself a uniform sample; the
script grows it with the same draw. Unlike the bundled MoS2 data, whose designs gather near
the unstrained cell, most rows here are strongly strained: {metal} % are metallic, and
{windows}.

**Each row.** GPAW 26.7.0, PBE without spin-orbit coupling or spin polarisation, plane
waves at 250 eV, a Γ-centred 6×6×1 mesh (it holds K, where the band edges sit),
Fermi-Dirac smearing of 0.01 eV, SCF stopped at density 1e-3 and eigenstates 1e-6. The
field is GPAW's sawtooth along the layer normal, its jump in the vacuum; the chalcogen
planes move with c (the "fractional" convention). `settings.json` holds the settings as the
oracle took them. They make a table of thousands of rows feasible on 2 cores: the
unstrained cell (a = 3.18 Å, c = 12.32 Å, no field) gives 1.849 eV here against 1.842 eV at
the production setting (350 eV, 9×9×1), in 4 s instead of 15 s on one core.

**Strain energy.** The total energy per formula unit less that of the unstrained cell
without field, computed once under the same settings (the oracle's reference job).

**Cost.** {hours} hours of GPAW for these rows by the jobs' own clocks, median {median} s a
row, one core a job and two jobs at a time on a 2-core machine. A job's clock also runs
while the machine pauses or slows it: {paused} rows took over ten times the median. Measuring
is resumable: the oracle re-attaches to its jobs and never pays for a design twice.

Licence: MIT, like the rest of innloop.
"""


if __name__ == "__main__":
    raise SystemExit(main())
