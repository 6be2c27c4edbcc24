"""The WS2 table script with a stand-in for GPAW: it measures, resumes without paying twice,
queues again what the machinery lost, and ships the table the `table` oracle reads."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from agent.core.materials import get_material, read_observations

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = textwrap.dedent("""
    import json, os, sys
    inp, out = sys.argv[1], sys.argv[2]
    d = json.load(open(inp))["design"]
    with open(os.path.join(os.path.dirname(inp), "..", "..", "runs.txt"), "a") as log:
        log.write(os.path.basename(os.path.dirname(inp)) + "\\n")
    res = {"gap_eV": max(0.0, 1.8 - 4 * abs(d["a"] - 3.18)), "converged": True, "error": None,
           "energy_eV": -22.0 + (d["a"] - 3.18) ** 2 + 0.1 * d["efield"], "formula_units": 1, "wall_s": 0.1}
    open(out + ".tmp", "w").write(json.dumps(res))
    os.replace(out + ".tmp", out)
""")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("measure_ws2_table", ROOT / "scripts" / "measure_ws2_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_is_measured_resumed_and_shipped(tmp_path: Path) -> None:
    script, stand_in = _script(), tmp_path / "stand_in.py"
    stand_in.write_text(STAND_IN)
    work, ship = tmp_path / "work", tmp_path / "ship"
    args = ["--dir", str(work), "--n", "6", "--poll", "0.2", "--command", sys.executable, str(stand_in)]
    assert script.main(args, ship_dir=ship) == 0  # nothing shipped there yet: every design measured
    table = pd.read_csv(work / "ws2_gpaw_table.csv")
    assert len(table) == 6 and table["strain_energy"].notna().all() and (table["energy"] < -21).all()
    assert json.loads((work / "settings.json").read_text())["settings"] == script.TABLE_SETTINGS
    runs = (work / "runs.txt").read_text().split()
    assert len(runs) == 7 and runs[0].startswith("0-reference-"), "six designs and the unstrained reference"

    # One job's process died without an answer; growing the table to 8 rows reruns that one
    # job and measures the two new designs, nothing else.
    lost = json.loads((work / "handles.json").read_text())[2]["workdir"]
    (Path(lost) / "output.json").unlink()
    assert script.main([*args[:3], "8", *args[4:], "--ship"], ship_dir=ship) == 0
    rerun = (work / "runs.txt").read_text().split()[7:]
    assert len(rerun) == 3 and Path(lost).name not in rerun, "a new job for the lost one, two for the new designs"
    assert np.array_equal(script.draw(8)[:6], script.draw(6)), "a larger table starts with the same designs"
    shipped = read_observations(ship / "ws2_gpaw_table.csv", get_material("ws2"))
    assert len(shipped.y) == 8


def test_shipping_while_measuring_takes_the_finished_prefix_of_the_draw(tmp_path: Path) -> None:
    """Rows 0, 1, 3 finished (written out of order), row 2 failed, row 4 still running: designs
    0-3 are shipped in draw order (three rows, one failure); row 5, finished early, waits with
    row 4. A job the machinery lost is no answer; a shorter prefix never replaces a longer one."""
    script, work, ship = _script(), tmp_path / "work", tmp_path / "ship"
    work.mkdir()
    space = get_material("ws2").space
    frame = space.to_frame(script.draw(6))
    frame.to_csv(work / "designs.csv", index=False)
    done = frame.iloc[[3, 0, 5, 1]].assign(gap=[0.5, 0.0, 1.2, 1.0], strain_energy=1.0, energy=-20.0, wall_s=9.0)
    done.to_csv(work / "ws2_gpaw_table.csv", index=False, float_format="%.10g")
    failed = frame.iloc[[2]].assign(status="failed", error_class="physics", message="SCF")
    failed.to_csv(work / "failures.csv", index=False)
    (work / "settings.json").write_text(json.dumps({"material": "ws2", "settings": script.TABLE_SETTINGS}))
    ship_measured = ["--dir", str(work), "--ship-measured"]
    assert script.main(ship_measured, ship_dir=ship) == 0
    shipped = pd.read_csv(ship / "ws2_gpaw_table.csv")
    assert shipped["gap"].tolist() == [0.0, 1.0, 0.5]
    assert np.allclose(shipped[space.names].to_numpy(), frame.iloc[[0, 1, 3]].to_numpy())
    assert len(pd.read_csv(ship / "failures.csv")) == 1
    assert json.loads((ship / "settings.json").read_text())["settings"] == script.TABLE_SETTINGS
    assert (ship / "README.md").read_text() == script.readme(shipped, 1, 4)

    # design 2's job was lost by the machinery, not answered: the prefix ends before it, and
    # shipping those two rows would shrink the shipped table, so nothing is written
    failed.assign(status="failed", error_class="infrastructure").to_csv(work / "failures.csv", index=False)
    with pytest.raises(SystemExit, match=r"finished prefix has 2 rows, .* holds 3: not shipped"):
        script.main(ship_measured, ship_dir=ship)
    assert len(pd.read_csv(ship / "ws2_gpaw_table.csv")) == 3
    (work / "failures.csv").write_text("\n")  # no failure yet: the script writes an empty frame
    assert script.main(ship_measured, ship_dir=tmp_path / "other") == 0
    assert len(pd.read_csv(tmp_path / "other" / "ws2_gpaw_table.csv")) == 2
    with pytest.raises(SystemExit, match="no table measured here"):
        script.main(["--dir", str(tmp_path / "nowhere"), "--ship-measured"], ship_dir=ship)


def test_a_new_folder_starts_from_the_shipped_table_and_pays_for_no_row_twice(tmp_path: Path) -> None:
    """Six designs measured and shipped from one folder, that folder lost: a new folder asked
    for nine measures designs 7-9 only, its table holds all nine, and shipping it grows the
    shipped table. A shipped table that is not this draw's prefix is refused."""
    script, stand_in, ship = _script(), tmp_path / "stand_in.py", tmp_path / "ship"
    stand_in.write_text(STAND_IN)
    command = ["--poll", "0.2", "--command", sys.executable, str(stand_in)]
    assert script.main(["--dir", str(tmp_path / "old"), "--n", "6", *command, "--ship"], ship_dir=ship) == 0
    first = pd.read_csv(ship / "ws2_gpaw_table.csv")
    new = tmp_path / "new"
    with pytest.raises(SystemExit, match="holds 6 designs of the draw already: ask --n 7 or more"):
        script.main(["--dir", str(new), "--n", "5", *command], ship_dir=ship)
    assert script.main(["--dir", str(new), "--n", "9", *command, "--ship"], ship_dir=ship) == 0
    runs = (new / "runs.txt").read_text().split()
    assert len(runs) == 4 and runs[0].startswith("0-reference-"), "the reference and the three new designs"
    grown = pd.read_csv(ship / "ws2_gpaw_table.csv")
    assert len(grown) == 9 and grown.iloc[:6].equals(first), "the shipped rows first, unchanged"
    space = get_material("ws2").space
    assert np.allclose(grown[space.names].to_numpy(), space.to_frame(script.draw(9)).to_numpy())
    reference = grown["energy"] - grown["strain_energy"]
    assert np.allclose(reference, reference.iloc[0], atol=1e-9), "one reference for the seeded and the new rows"
    with pytest.raises(SystemExit, match="starts after design 6 of the draw: ask --n 7 or more"):
        script.main(["--dir", str(new), "--n", "5", *command], ship_dir=ship)

    # the split is the folder's own: a rerun after shipping (the shipped table now longer)
    # measures nothing; a folder without a seed and --no-shipped measures every design
    assert script.main(["--dir", str(new), "--n", "9", *command], ship_dir=ship) == 0
    assert len((new / "runs.txt").read_text().split()) == 4
    assert script.main(["--dir", str(tmp_path / "all"), "--n", "2", *command, "--no-shipped"], ship_dir=ship) == 0
    assert len((tmp_path / "all" / "runs.txt").read_text().split()) == 3

    # a folder that queued jobs before it died (no handles saved) is never seeded: its jobs
    # for the first designs are adopted, not left unused
    queued = tmp_path / "queued" / "jobs" / "0-some-job"
    queued.mkdir(parents=True)
    assert script.seed_from_shipped(queued.parents[1], ship, script.draw(12))[0] == 0
    assert json.loads((queued.parents[1] / "seed.json").read_text()) == {"designs": 0}

    other = tmp_path / "other"
    other.mkdir()
    grown.iloc[[1, 0, 2]].assign(a=3.5).to_csv(other / "ws2_gpaw_table.csv", index=False)
    (other / "settings.json").write_text((ship / "settings.json").read_text())
    with pytest.raises(SystemExit, match="not the first 3 of this draw"):
        script.main(["--dir", str(tmp_path / "x"), "--n", "9", *command], ship_dir=other)
    (other / "settings.json").write_text(json.dumps({"settings": {"ecut_eV": 350.0}}))
    with pytest.raises(SystemExit, match="shipped under other settings"):
        script.main(["--dir", str(tmp_path / "y"), "--n", "9", *command], ship_dir=other)
