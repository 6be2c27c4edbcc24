"""The campaign configuration: shipped files load, and every mistake is one clear line."""

from __future__ import annotations

import copy
import inspect
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from agent.campaign.config import CampaignConfig, config_from_dict, load_config
from agent.core.errors import ConfigError
from oracles.gpaw import GpawOracle
from oracles.gpaw_settings import parse_settings as _parse_settings
from oracles.http import HttpOracle
from oracles.mock import MockOracle
from oracles.table import TableOracle
from oracles.vasp import VaspOracle

SHIPPED = ["default", "table", "gpaw", "vasp", "http", "ws2_gpaw"]
ORACLES = {"mock": MockOracle, "table": TableOracle, "gpaw": GpawOracle, "vasp": VaspOracle, "http": HttpOracle}
BASE: dict[str, Any] = {"name": "t", "targets": [{"value": 1.0}]}
DELETE = object()  # marks a key to remove in `with_`


def shipped(name: str) -> Path:
    return Path(str(resources.files("agent") / "configs" / f"{name}.toml"))


def with_(path: str, value: Any) -> dict[str, Any]:
    """BASE with one dotted key set (list indices as digits); ``DELETE`` removes it."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [line for line in str(exc.value).splitlines() if line.startswith("  - ")]


# -- shipped files ------------------------------------------------------------------------
def test_default_loads() -> None:
    cfg = load_config()
    assert cfg.name == "mos2-default" and cfg.material == "mos2" and cfg.oracle.name == "mock"
    assert [t.value for t in cfg.targets] == [0.5, 1.0] and all(t.hits == 10 for t in cfg.targets)
    assert cfg.budget.oracle_calls == 150 and cfg.budget.wall_time_s == 280
    assert cfg.ray.cpus_per_actor == 0.25 and cfg.initial.random == 30
    assert cfg == load_config(shipped("default"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_loads_with_real_oracle_settings(name: str) -> None:
    cfg = load_config(shipped(name))
    assert cfg.fingerprint() == load_config(shipped(name)).fingerprint()
    # every settings key must be a real constructor parameter of that oracle
    inspect.signature(ORACLES[cfg.oracle.name]).bind(**cfg.oracle.settings)
    if cfg.oracle.name == "gpaw":
        _parse_settings(cfg.oracle.settings.get("settings"), (9, 9, 1))


def test_defaults_fill_every_section() -> None:
    cfg = config_from_dict(BASE)
    assert cfg.targets[0].window == 0.1 and cfg.targets[0].hits == 50
    assert cfg.oracle.name == "mock" and cfg.oracle.settings == {}
    assert cfg.loop.batch_size == 10 and cfg.budget.oracle_calls == 200 and cfg.models.generator == "cinn"
    assert cfg.ray.enabled and cfg.retry.max_attempts == 3 and cfg.retry.job_timeout_s is None


# -- one mistake, one line ----------------------------------------------------------------
CASES = [
    ("unknown top-level key", {**BASE, "colour": "red"}, "colour: unknown key"),
    ("unknown nested key", with_("loop.batchsize", 5), "loop.batchsize: unknown key (did you mean 'batch_size'?)"),
    ("wrong type", with_("budget.oracle_calls", "many"), "budget.oracle_calls: must be an integer (got 'many')"),
    ("bool is not int", with_("seed", True), "seed: must be an integer (got True)"),
    ("section not a table", with_("loop", 5), "loop: must be a table (got 5)"),
    ("negative window", with_("targets.0.window", -0.1), "targets.0.window: must be > 0 (got -0.1)"),
    ("nan target", with_("targets.0.value", float("nan")), "targets.0.value: must be a finite number"),
    ("zero batch size", with_("loop.batch_size", 0), "loop.batch_size: must be >= 1 (got 0)"),
    ("exploration above 1", with_("loop.exploration", 1.5), "loop.exploration: must be <= 1 (got 1.5)"),
    ("zero max sigma", with_("loop.max_sigma", 0.0), "loop.max_sigma: must be > 0 (got 0.0)"),
    ("misspelt max sigma", with_("loop.max_sigmaa", 0.1), "loop.max_sigmaa: unknown key (did you mean 'max_sigma'?)"),
    ("empty targets", with_("targets", []), "targets: must not be empty"),
    ("missing targets", with_("targets", DELETE), "targets: required key is missing"),
    ("duplicate targets", with_("targets", [{"value": 1.0}, {"value": 1.0}]), "targets.1.value: same value as"),
    ("target above data", with_("targets.0.value", 9.0), "targets.0.value: outside the mos2 data's gap range"),
    ("window too wide", with_("targets.0.window", 5.0), "targets.0.window: must be smaller than"),
    ("unknown oracle", with_("oracle.name", "moc"), "oracle.name: unknown oracle (did you mean 'mock'?)"),
    ("unknown generator", with_("models.generator", "flow"), "models.generator: unknown generator"),
    ("unknown material", with_("material", "graphene"), "material: unknown material"),
    ("name escapes folder", with_("name", "../../etc"), "name: must be"),
    ("name with command", with_("name", ";rm -rf"), "name: must be"),
    ("name with space", with_("name", "a b"), "name: must be"),
    ("name with newline", with_("name", "abc\n"), "name: must be"),
    ("name too long", with_("name", "a" * 65), "name: must be"),
    ("missing name", with_("name", DELETE), "name: required key is missing"),
    ("all budgets unset", with_("budget.oracle_calls", None), "budget: set at least one of"),
    ("whole cpus per actor", with_("ray.cpus_per_actor", 2), "ray.cpus_per_actor: must be <= 1 (got 2)"),
    ("one member", with_("models.members", 1), "models.members: must be >= 2 (got 1)"),
    ("zero timeout", with_("retry.job_timeout_s", 0.0), "retry.job_timeout_s: must be > 0 (got 0.0)"),
    ("settings not a table", with_("oracle.settings", [1]), "oracle.settings: must be a table"),
    ("missing prior data", with_("initial.data", "no-such.csv"), "initial.data: no such file"),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_mistake_one_line(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data, source="test.toml")
    text = str(exc.value)
    assert text.startswith("invalid configuration test.toml (1 problem):")
    lines = problems(exc)
    assert len(lines) == 1 and expected in lines[0], text
    assert "pydantic" not in text and "https://" not in text


def test_mistake_in_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[[targets]]\nvalue = 1.0\nwindow = -0.1\n')
    with pytest.raises(ConfigError, match=r"c\.toml.*\n  - targets\.0\.window: must be > 0 \(got -0\.1\)$"):
        load_config(path)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[loop\nbatch_size = 1\n')
    with pytest.raises(ConfigError, match=r"broken\.toml.*not valid TOML.*line 2"):
        load_config(path)


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_unreadable_file_is_named(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "absent.toml"
    if kind == "folder":
        path.mkdir()
    with pytest.raises(ConfigError, match=r"cannot read config file .*absent\.toml"):
        load_config(path)


def test_prior_data_is_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prior.csv").write_text("a,b,c,alpha,beta,gamma,efield,gap\n3.16,3.16,12.3,90,90,120,0,1.7\n")
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[[targets]]\nvalue = 1.0\n[initial]\ndata = "prior.csv"\n')
    monkeypatch.chdir(tmp_path.parent)
    assert load_config(path).initial.data == str((tmp_path / "prior.csv").resolve())


# -- many mistakes, one error -------------------------------------------------------------
MANY = """
name = "a b"
colour = "red"
[[targets]]
value = 9.0
window = -1.0
[[targets]]
value = 1.0
hits = 0
[oracle]
name = "nope"
[loop]
batchsize = 3
exploration = 1.5
[budget]
oracle_calls = "many"
[models]
generator = "flow"
members = 1
[ray]
cpus_per_actor = 2
[retry]
backoff_s = -1.0
"""
MANY_LOCATIONS = [
    "name",
    "colour",
    "targets.0.window",
    "targets.1.hits",
    "oracle.name",
    "loop.batchsize",
    "loop.exploration",
    "budget.oracle_calls",
    "models.generator",
    "models.members",
    "ray.cpus_per_actor",
    "retry.backoff_s",
]


def test_many_mistakes_one_error_listing_all(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text(MANY)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    lines = problems(exc)
    assert f"({len(MANY_LOCATIONS)} problems)" in str(exc.value).splitlines()[0]
    assert sorted(line.split(":")[0].removeprefix("  - ") for line in lines) == sorted(MANY_LOCATIONS)


def test_cross_field_checks_report_with_field_errors() -> None:
    data = with_("loop.batch_size", 0)
    data["targets"] = [{"value": 9.0}, {"value": 1.0}, {"value": 1.0}]
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    where = [line.split(":")[0].removeprefix("  - ") for line in problems(exc)]
    assert sorted(where) == ["loop.batch_size", "targets.0.value", "targets.2.value"]


# -- serialisation and fingerprint ------------------------------------------------------
def test_to_dict_round_trips() -> None:
    cfg = load_config(shipped("gpaw"))
    assert config_from_dict(cfg.to_dict()) == cfg


def test_fingerprint_stable_for_equal_configs() -> None:
    a, b = config_from_dict(BASE), config_from_dict(copy.deepcopy(BASE))
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 16
    assert config_from_dict(with_("targets.0.value", 1)).fingerprint() == a.fingerprint()  # 1 == 1.0


def test_fingerprint_changes_with_targets_not_budget() -> None:
    base = config_from_dict(BASE)
    assert config_from_dict(with_("targets.0.value", 1.2)).fingerprint() != base.fingerprint()
    assert config_from_dict(with_("targets.0.hits", 7)).fingerprint() != base.fingerprint()
    assert config_from_dict(with_("budget.oracle_calls", 999)).fingerprint() == base.fingerprint()
    assert config_from_dict(with_("budget.oracle_calls", 999)).fingerprint(exclude=()) != base.fingerprint(exclude=())


def test_fingerprint_refuses_unknown_section() -> None:
    with pytest.raises(ValueError, match="unknown sections"):
        config_from_dict(BASE).fingerprint(exclude=("budgets",))


def test_config_is_immutable() -> None:
    cfg: CampaignConfig = config_from_dict(BASE)
    with pytest.raises(ValueError, match="frozen"):
        cfg.seed = 3
