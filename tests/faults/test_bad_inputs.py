"""A corpus of bad inputs: each must end as one clear error, exit code 2, and no damage.

Three tables, one per kind of input a user hands `innloop run`:

- configs (the campaign TOML): unknown keys, wrong types, values outside their bounds,
  targets outside the data's range, zero or negative budgets, unknown names;
- data files (``[initial] data`` and ``designs``): missing columns, NaN, units off by
  100x, duplicate rows with conflicting values, files that are not CSV at all;
- state (a campaign folder being resumed): truncated JSON, checksum mismatches, weight
  files that are not what they claim, a folder started by another campaign.

Every case asserts: exit code 2, stderr starting with ``innloop: error: `` and naming the
offending file and the problem, no traceback, and nothing written: a config or data
mistake must not even create the state folder, and a state mistake must leave every
file of the folder byte for byte as it was (and add none).

The state holds JSON, JSON lines, CSV and torch weight files only (no parquet), so
"truncated parquet" has no counterpart here; truncated JSON, JSON lines, CSV and torch
files are covered instead.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.campaign.ledger import seal
from agent.cli.main import main

TINY = """\
name = "tiny"
seed = 1
[[targets]]
value = 1.0
hits = 30
[initial]
random = 12
[loop]
batch_size = 4
samples_per_target = 200
[budget]
iterations = 2
[models]
members = 2
surrogate_epochs = 20
surrogate_warm_epochs = 5
generator_epochs = 10
generator_warm_epochs = 5
[ray]
enabled = false
[retry]
poll_interval_s = 0.01
"""
RESUME = TINY.replace("iterations = 2", "iterations = 3")  # budgets may grow on resume
DATA = Path(__file__).resolve().parents[2] / "agent" / "data" / "mos2" / "mos2_pbe_bandgaps.csv"


def _run(capsys: pytest.CaptureFixture[str], config: Path, state: Path) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["run", str(config), "--state", str(state), "--no-prefect", "--no-ray", "-q"])
    return code, capsys.readouterr().err


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file and a marker for every folder below ``root``; the run lock, which
    names the last process that ran the campaign, is not data and may change."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.name == "run.lock":
            out[rel] = "<lock>"
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
    return out


def _check_error(code: int, err: str, where: Path | str, fragments: tuple[str, ...]) -> None:
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert err.splitlines() and err.splitlines()[0].startswith("innloop: error: "), err
    assert "Traceback" not in err, err
    assert str(where) in err, f"{where} not named in:\n{err}"
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in:\n{err}"


def _with(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# -- configs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigCase:
    id: str
    make: Callable[[Path], str | bytes]  # folder -> the config file's content
    expected: tuple[str, ...]


def _toml(old: str, new: str) -> Callable[[Path], str]:
    return lambda _folder: _with(TINY, old, new)


def _data_toml(line: str) -> Callable[[Path], str]:
    return lambda _folder: _with(TINY, "random = 12", f"random = 12\n{line}")


CONFIG_CASES = [
    ConfigCase("unknown_top_level_key", _toml("seed = 1", 'seed = 1\ncolour = "red"'), ("colour: unknown key",)),
    ConfigCase(
        "misspelt_key",
        _toml("batch_size = 4", "batch_sise = 4"),
        ("loop.batch_sise: unknown key (did you mean 'batch_size'?)",),
    ),
    ConfigCase("misspelt_section", _toml("[models]", "[modles]"), ("modles: unknown key (did you mean 'models'?)",)),
    ConfigCase(
        "string_for_integer", _toml("batch_size = 4", 'batch_size = "4"'), ("loop.batch_size: must be an integer",)
    ),
    ConfigCase("string_for_bool", _toml("enabled = false", 'enabled = "no"'), ("ray.enabled: must be true or false",)),
    ConfigCase(
        "number_for_table",
        lambda _f: _with(_with(TINY, "[budget]\niterations = 2\n", ""), "seed = 1", "seed = 1\nbudget = 2"),
        ("budget: must be a table",),
    ),
    ConfigCase("nan_target", _toml("value = 1.0", "value = nan"), ("targets.0.value: must be a finite number",)),
    ConfigCase("missing_name", _toml('name = "tiny"\n', ""), ("name: required key is missing",)),
    ConfigCase("name_is_a_path", _toml('name = "tiny"', 'name = "../tiny"'), ("name: must be 1-64 letters",)),
    ConfigCase(
        "no_targets", _toml("[[targets]]\nvalue = 1.0\nhits = 30\n", "targets = []\n"), ("targets: must not be empty",)
    ),
    ConfigCase(
        "target_above_data",
        _toml("value = 1.0", "value = 7.5"),
        ("targets.0.value: outside the mos2 data's gap range",),
    ),
    ConfigCase(
        "target_below_data",
        _toml("value = 1.0", "value = -0.5"),
        ("targets.0.value: outside the mos2 data's gap range",),
    ),
    ConfigCase("zero_window", _toml("hits = 30", "hits = 30\nwindow = 0.0"), ("targets.0.window: must be > 0",)),
    ConfigCase("negative_window", _toml("hits = 30", "hits = 30\nwindow = -0.1"), ("targets.0.window: must be > 0",)),
    ConfigCase(
        "window_wider_than_data", _toml("hits = 30", "hits = 30\nwindow = 50.0"), ("targets.0.window: must be smaller",)
    ),
    ConfigCase("zero_hits", _toml("hits = 30", "hits = 0"), ("targets.0.hits: must be >= 1",)),
    ConfigCase("zero_iterations", _toml("iterations = 2", "iterations = 0"), ("budget.iterations: must be >= 1",)),
    ConfigCase(
        "negative_oracle_calls", _toml("iterations = 2", "oracle_calls = -10"), ("budget.oracle_calls: must be >= 1",)
    ),
    ConfigCase(
        "zero_wall_time",
        _toml("iterations = 2", "iterations = 2\nwall_time_s = 0"),
        ("budget.wall_time_s: must be > 0",),
    ),
    ConfigCase("zero_batch", _toml("batch_size = 4", "batch_size = 0"), ("loop.batch_size: must be >= 1",)),
    # the config has no (lower, upper) pairs; these are its bounded values, crossed
    ConfigCase(
        "exploration_above_one",
        _toml("batch_size = 4", "batch_size = 4\nexploration = 1.5"),
        ("loop.exploration: must be <= 1",),
    ),
    ConfigCase(
        "cpus_above_one",
        _toml("enabled = false", "enabled = false\ncpus_per_actor = 2.0"),
        ("ray.cpus_per_actor: must be <= 1",),
    ),
    ConfigCase("one_member_ensemble", _toml("members = 2", "members = 1"), ("models.members: must be >= 2",)),
    ConfigCase(
        "unknown_oracle",
        _toml("[initial]", '[oracle]\nname = "vaps"\n[initial]'),
        ("oracle.name: unknown oracle (did you mean 'vasp'?)",),
    ),
    ConfigCase(
        "unknown_oracle_setting",
        _toml("[initial]", "[oracle.settings]\nlatnecy_s = 1.0\n[initial]"),
        ("oracle.settings.latnecy_s: unknown setting of the mock oracle (did you mean 'latency_s'?)",),
    ),
    pytest.param(
        ConfigCase(
            "bad_oracle_setting_value",
            _toml("[initial]", "[oracle.settings]\nfailure_rate = 2.0\n[initial]"),
            ("failure_rate in [0, 1]",),
        ),
        id="bad_oracle_setting_value",
    ),
    ConfigCase(
        "unknown_generator",
        _toml("members = 2", 'members = 2\ngenerator = "cinnn"'),
        ("models.generator: unknown generator",),
    ),
    ConfigCase("unknown_material", _toml("seed = 1", 'seed = 1\nmaterial = "mos3"'), ("material: unknown material",)),
    ConfigCase("not_toml", _toml("[loop]", "[loop"), ("is not valid TOML",)),
    ConfigCase("not_utf8", lambda _f: b'name = "tiny\xff"\n', ("is not UTF-8 text",)),
    ConfigCase("missing_prior_data", _data_toml('data = "nowhere.csv"'), ("initial.data: no such file", "nowhere.csv")),
    ConfigCase("prior_data_is_a_folder", _data_toml('data = "."'), ("initial.data: not a regular file",)),
]


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.id if isinstance(c, ConfigCase) else None)
def test_bad_config(case: ConfigCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "campaign.toml"
    content = case.make(tmp_path)
    config.write_bytes(content.encode() if isinstance(content, str) else content)
    before = _snapshot(tmp_path)
    code, err = _run(capsys, config, tmp_path / "state")
    _check_error(code, err, config, case.expected)
    assert _snapshot(tmp_path) == before, "a bad config wrote something"


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, tmp_path / "nope.toml", tmp_path / "state")
    _check_error(code, err, tmp_path / "nope.toml", ("cannot read config file",))
    assert not (tmp_path / "state").exists()


# -- data files ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataCase:
    id: str
    key: str  # "data" (observations with values) or "designs" (designs alone)
    make: Callable[[pd.DataFrame, Path], object]  # (20 good rows, path) -> writes the bad file
    expected: tuple[str, ...]


def _frame(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[pd.DataFrame, Path], object]:
    return lambda good, path: edit(good.copy()).to_csv(path, index=False)


def _bytes(content: bytes) -> Callable[[pd.DataFrame, Path], object]:
    return lambda _good, path: path.write_bytes(content)


def _set(row: int, col: str, value: float | str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return edit


def _in_pm(df: pd.DataFrame) -> pd.DataFrame:
    df[["a", "b", "c"]] *= 100.0  # lattice constants in pm, not Å
    return df


def _conflicting_repeat(df: pd.DataFrame) -> pd.DataFrame:
    twin = df.iloc[[3]].assign(gap=df["gap"].iloc[3] + 0.7)
    return pd.concat([df, twin], ignore_index=True)


def _bad_cell(df: pd.DataFrame) -> pd.DataFrame:
    # each value inside its bounds, together a cell too flat to leave vacuum between the layers
    df.loc[0, ["c", "alpha", "beta", "gamma"]] = [10.0, 72.0, 72.0, 143.9]
    return df


DATA_CASES = [
    DataCase("missing_column", "data", _frame(lambda df: df.drop(columns=["efield"])), ("missing columns ['efield']",)),
    DataCase(
        "missing_target_column", "data", _frame(lambda df: df.drop(columns=["gap"])), ("missing columns ['gap']",)
    ),
    DataCase("nan_value", "data", _frame(_set(5, "gap", np.nan)), ("non-finite values", "column 'gap'")),
    DataCase("non_numeric_value", "data", _frame(_set(2, "c", "12.3x")), ("non-numeric columns ['c']", "'12.3x'")),
    DataCase("units_off_by_100", "data", _frame(_in_pm), ("outside the design space", "a=314.178 Å is outside")),
    DataCase("field_out_of_bounds", "data", _frame(_set(7, "efield", 3.0)), ("row 7: efield=3 V/Å is outside",)),
    DataCase("impossible_cell", "data", _frame(_bad_cell), ("1 violating constraints", "row 0: layer_spacing")),
    DataCase("negative_gap", "data", _frame(_set(4, "gap", -0.3)), ("below its physical lower bound",)),
    DataCase(
        "conflicting_duplicates", "data", _frame(_conflicting_repeat), ("conflicting 'gap' values", "rows [3, 20]")
    ),
    DataCase(
        "duplicate_column",
        "data",
        lambda good, path: path.write_text("a,a,b\n1,2,3\n"),
        ("duplicate column names ['a']",),
    ),
    DataCase("empty_file", "data", _bytes(b""), ("not a readable CSV table",)),
    DataCase("header_only", "data", _frame(lambda df: df.iloc[:0]), ("the table has no rows",)),
    DataCase(
        "binary_not_csv", "data", _bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"), ("not a readable CSV table",)
    ),
    DataCase("json_not_csv", "data", _bytes(b'{"a": [3.1], "gap": [1.0]}\n'), ("missing columns",)),
    DataCase(
        "designs_missing_column",
        "designs",
        _frame(lambda df: df.drop(columns=["gap", "beta"])),
        ("missing columns ['beta']",),
    ),
    DataCase(
        "designs_in_pm", "designs", _frame(lambda df: _in_pm(df.drop(columns=["gap"]))), ("a=314.178 Å is outside",)
    ),
    DataCase("designs_with_nan", "designs", _frame(_set(1, "alpha", np.nan)), ("non-finite values", "column 'alpha'")),
    DataCase("designs_empty", "designs", _bytes(b""), ("not a readable CSV table",)),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_bad_data_file(case: DataCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "prior.csv"
    case.make(pd.read_csv(DATA).head(20), csv)
    config = tmp_path / "campaign.toml"
    config.write_text(_with(TINY, "random = 12", f'random = 12\n{case.key} = "prior.csv"'))
    before = _snapshot(tmp_path)
    code, err = _run(capsys, config, tmp_path / "state")
    _check_error(code, err, csv, (f"initial.{case.key}", *case.expected))
    assert _snapshot(tmp_path) == before, "a bad data file made the campaign write something"


def test_good_data_file_is_accepted(tmp_path: Path) -> None:
    """The corpus's baseline: the 20 rows every data case spoils are themselves fine."""
    from agent.campaign.config import load_config

    pd.read_csv(DATA).head(20).to_csv(tmp_path / "prior.csv", index=False)
    pd.read_csv(DATA).head(5).drop(columns=["gap"]).to_csv(tmp_path / "designs.csv", index=False)
    config = tmp_path / "campaign.toml"
    config.write_text(_with(TINY, "random = 12", 'random = 12\ndata = "prior.csv"\ndesigns = "designs.csv"'))
    assert load_config(config).initial.data == str(tmp_path / "prior.csv")


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
        config=lambda text: _with(text, "seed = 1", "seed = 2"),
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
    before = _snapshot(state)
    code, err = _run(capsys, config, state)
    _check_error(code, err, spoiled, case.expected)
    assert _snapshot(state) == before, "a bad state was changed"


def test_resume_of_an_unspoiled_copy_works(campaign: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The corpus's baseline: a copied state resumes, so every failure above is the spoiling's."""
    state = tmp_path / "state"
    shutil.copytree(campaign, state)
    (tmp_path / "tiny.toml").write_text(RESUME)
    code, err = _run(capsys, tmp_path / "tiny.toml", state)
    assert code == 0, err
    assert (state / "tiny" / "iterations" / "0002" / "manifest.json").is_file()
