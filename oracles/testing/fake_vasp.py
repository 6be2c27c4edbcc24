"""A stand-in for the VASP executable: ``python -m oracles.testing.fake_vasp`` in a job folder.

Why: the `vasp` oracle's scheduler path (psij -> SLURM -> job folder -> vasprun.xml) needs
testing where there is no VASP licence. The fake checks that POSCAR and INCAR are there
and readable (as VASP would), then writes a *real* vasprun.xml -- ASE's test file
``vasprun_pstress.xml`` (VASP 6.3.0, diamond, 9 electronic steps, converged, PBE gap
5.5504 eV on its 4×4×4 mesh) -- with the <generator> start date/time replaced by now,
as a fresh VASP run would have it. No physics is computed: the value is that file's.

Behaviour (``FAKE_VASP_MODE`` in the environment, or a file ``FAKE_VASP_MODE`` in the
folder, which wins):

- ``normal``: sleep ``FAKE_VASP_DELAY_S`` (default 0.5 s), write the file, exit 0.
- ``sleep``: sleep ``FAKE_VASP_SLEEP_S`` (default 600 s) first -- for walltime kills.
- ``truncate``: write the first half of the file (a run killed mid-write), exit 0.
- ``unconverged``: write `unconverged_vasprun` of the file (see there), exit 0.
- ``crash``: write nothing, exit 1.

Every start appends one line ``<folder> <SLURM_JOB_ID> <unix time>`` to the file named by
``FAKE_VASP_LOG`` (when set), so tests can count how often "VASP" really ran.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

__all__ = ["MODES", "real_vasprun_path", "unconverged_vasprun"]

MODES = ("normal", "sleep", "truncate", "unconverged", "crash")


def real_vasprun_path() -> Path:
    """ASE's real VASP 6.3.0 vasprun.xml (ships with the ``ase`` package's test data)."""
    import ase  # only to find its bundled test data; the fake VASP's run never needs it

    path = Path(ase.__file__).parent / "test" / "testdata" / "vasp" / "vasprun_pstress.xml"
    if not path.is_file():
        raise FileNotFoundError(f"ASE test data not found at {path}; is the ase package complete?")
    return path


def unconverged_vasprun(text: str, keep: int = 3) -> str:
    """The real run as VASP would have left it with NELM = ``keep``: non-converged.

    No real non-converged vasprun.xml ships with ASE or pymatgen's installed packages, so
    one is derived honestly from the converged file: its SCF loop is cut after ``keep``
    electronic steps and NELM is set to ``keep``, which is exactly what VASP writes
    when it stops at NELM. With ``keep = 3`` the energy still changes by 0.09 eV between
    steps 2 and 3 (EDIFF is 1e-4 eV), so the run really had not converged there. The
    eigenvalues and the rest stay those of the full run (VASP would print its
    unconverged ones; nothing reads them from a non-converged run).
    """
    start = text.index("<calculation>")
    steps = [m.start() for m in re.finditer(r"<scstep>", text[start:])]
    if len(steps) <= keep:
        raise ValueError(f"the run has only {len(steps)} electronic steps; cannot cut after {keep}")
    cut_from = start + steps[keep]
    cut_to = text.index("<structure>", cut_from)  # the first element after the last scstep
    text = text[:cut_from] + text[cut_to:].lstrip(" ")
    text, n = re.subn(r'(<i type="int" name="NELM">)\s*\d+(</i>)', rf"\g<1>{keep:>6}\g<2>", text, count=1)
    if n != 1:
        raise ValueError("NELM not found in the vasprun.xml parameters")
    return text


def _stamp_now(text: str) -> str:
    """Put the current local date and time into <generator>, as VASP does at start-up."""
    now = time.localtime()
    text = re.sub(r'(name="date"[^>]*>)[^<]*', rf"\g<1>{time.strftime('%Y %m %d', now)} ", text, count=1)
    return re.sub(r'(name="time"[^>]*>)[^<]*', rf"\g<1>{time.strftime('%H:%M:%S', now)} ", text, count=1)


def _mode(folder: Path) -> str:
    marker = folder / "FAKE_VASP_MODE"
    mode = marker.read_text().strip() if marker.exists() else os.environ.get("FAKE_VASP_MODE", "normal")
    if mode not in MODES:
        raise SystemExit(f"fake_vasp: unknown FAKE_VASP_MODE {mode!r}; use one of {MODES}")
    return mode


def main() -> int:
    folder = Path.cwd()
    log = os.environ.get("FAKE_VASP_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{folder} {os.environ.get('SLURM_JOB_ID', '-')} {time.time():.3f}\n")
    # pymatgen after the invocation is logged: a job killed while it loads still counts as run
    from pymatgen.io.vasp.inputs import Incar, Poscar

    try:
        Poscar.from_file(folder / "POSCAR")
        incar = Incar.from_file(folder / "INCAR")
    except (OSError, ValueError) as exc:
        print(f"fake_vasp: cannot read the inputs in {folder}: {exc}", file=sys.stderr)
        return 2
    mode = _mode(folder)
    print(f"fake_vasp: mode {mode}, ENCUT {incar.get('ENCUT')}, EFIELD {incar.get('EFIELD')}", flush=True)
    if mode == "sleep":
        time.sleep(float(os.environ.get("FAKE_VASP_SLEEP_S", "600")))
    if mode == "crash":
        print("fake_vasp: crashing as asked", file=sys.stderr)
        return 1
    time.sleep(float(os.environ.get("FAKE_VASP_DELAY_S", "0.5")))
    text = _stamp_now(real_vasprun_path().read_text(encoding="iso-8859-1"))
    if mode == "unconverged":
        text = unconverged_vasprun(text)
    if mode == "truncate":
        text = text[: len(text) // 2]
    (folder / "vasprun.xml").write_text(text, encoding="iso-8859-1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
