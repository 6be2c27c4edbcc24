from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from agent.cli.main import main

DESIGN_COLUMNS = ["a", "b", "c", "alpha", "beta", "gamma", "efield"]
FAST = ["--surrogate-epochs", "3", "--generator-epochs", "2", "-q"]


@pytest.mark.slow
def test_design_end_to_end_writes_candidates_and_structures(tmp_path: Path) -> None:
    out, cif = tmp_path / "cands.csv", tmp_path / "cif"
    argv = [
        "design",
        "--target",
        "1.0",
        "-n",
        "2000",
        "--out",
        str(out),
        "--cif",
        str(cif),
        "--cif-max",
        "3",
        "--max-sigma",
        "0",
        "--state",
        str(tmp_path / "state"),
        *FAST,
    ]
    assert main(argv) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["target", *DESIGN_COLUMNS, "pred", "pred_std"]
    assert len(df) > 0
    assert (df["pred"] - 1.0).abs().max() <= 0.011
    assert sorted(p.suffix for p in cif.iterdir()) == [".cif"] * 3 + [".vasp"] * 3
    cached = list((tmp_path / "state" / "models" / "mos2").glob("*.pt"))
    assert len(cached) == 2, "surrogate and generator are cached"
    assert main([*argv[:-1], "--seed", "0"]) == 0  # second run loads from the cache


def test_unknown_material_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["design", "--target", "1.0", "--material", "unobtainium", "--state", str(tmp_path), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unobtainium" in err[0] and "mos2" in err[0]


def test_target_outside_the_data_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert main(["design", "--target", "7.5", "--state", str(state), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target 7.5 is outside" in err[0]
    assert not state.exists(), "nothing was trained or written"


@pytest.mark.slow
def test_corrupt_cached_weights_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    argv = ["design", "--target", "1.0", "-n", "200", "--state", str(state), "--out", str(tmp_path / "c.csv"), *FAST]
    assert main(argv) == 0
    (bad,) = (state / "models" / "mos2").glob("surrogate-*.pt")
    bad.write_bytes(b"garbage")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0] and bad.name in err[0]
    assert bad.read_bytes() == b"garbage", "a broken cache file is reported, not overwritten"


def test_bad_numbers_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["design", "--target", "1.0", "-n", "0", "--state", str(tmp_path), *FAST]) == 2
    assert "n_samples" in capsys.readouterr().err
