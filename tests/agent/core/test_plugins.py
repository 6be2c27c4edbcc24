"""Plugins through entry points (`agent.core.plugins`): listed beside the built-ins, imported
on first lookup, a broken one named in its error without breaking the others, and a name
taken twice (two plugins, or a plugin and a built-in) a clear error instead of a shadow.

Each test installs fake distributions: a ``*.dist-info`` folder (metadata and
``entry_points.txt``) and the plugin's modules in a temporary folder put on ``sys.path``,
with `importlib.metadata.entry_points` reading only that folder. Module names are unique
per test, since an imported module stays in ``sys.modules``.
"""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import generators
import oracles
from agent.campaign.config import config_from_dict
from agent.core import plugins
from agent.core.errors import ConfigError, UnknownNameError
from agent.core.materials import available_materials, base, get_material

Install = Callable[..., None]

MATERIAL = """
from agent.core.materials import Material
from agent.core.space import DesignSpace, Parameter

def {name}():
    space = DesignSpace("{name}", (Parameter("x", 0.0, 1.0), Parameter("y", 0.0, 1.0)))
    return Material(name="{name}", description="a plugin material", space=space, target="z",
                    target_unit="", target_lower_bound=None, build=None)
"""

ORACLE = """
class {name}:
    name = "{name}"
    def __init__(self, material="mos2", scale=1.0):
        self.material = material
    def submit(self, designs): return []
    def poll(self, handles): return []
    def results(self, handles): return []
    def cancel(self, handles): return None
"""

GENERATOR = """
from generators import CINN

class Gen(CINN):
    name = "{name}"
"""


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """``install(dist, {group: {name: "module:attr"}}, {module: source})``: a fake distribution.
    Every registry sees only what was installed here."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        dists = importlib.metadata.distributions(path=[str(site)])
        return [ep for d in dists for ep in d.entry_points if ep.group == group]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    plugins.reset()

    def add(dist: str, groups: dict[str, dict[str, str]], modules: dict[str, str] | None = None) -> None:
        info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        lines = [f"[{g}]\n" + "".join(f"{n} = {v}\n" for n, v in eps.items()) for g, eps in groups.items()]
        (info / "entry_points.txt").write_text("\n".join(lines))
        for module, source in (modules or {}).items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
        plugins.reset()  # what is installed changed

    yield add
    plugins.reset()  # the next lookup reads the real entry points again


def _tag() -> str:
    return f"plug{uuid.uuid4().hex[:8]}"


def test_plugins_are_listed_beside_builtins_and_imported_on_first_lookup(install: Install) -> None:
    tag = _tag()
    mat, orc, gen = f"{tag}_mat", f"{tag}_orc", f"{tag}_gen"
    builtin = available_materials()  # nothing is installed yet
    install(
        "demo-dist",
        {
            "innloop.materials": {mat: f"{mat}:{mat}"},
            "innloop.oracles": {orc: f"{orc}:{orc}"},
            "innloop.generators": {gen: f"{gen}:Gen"},
        },
        {mat: MATERIAL.format(name=mat), orc: ORACLE.format(name=orc), gen: GENERATOR.format(name=gen)},
    )
    assert available_materials() == sorted([*builtin, mat]) and "mos2" in builtin
    assert set(oracles.available_oracles()) == {"mock", "table", "gpaw", "vasp", "http", "manual", "sila2", orc}
    assert generators.available_generators() == sorted(["cinn", "cvae", "inn", "mdn", gen])
    assert not {mat, orc, gen} & set(sys.modules)  # listing imports nothing

    material = get_material(mat)
    assert material.name == mat and material.build is None and get_material(mat) is material  # loaded once
    assert oracles.oracle_class(orc).__name__ == orc
    assert getattr(oracles.make_oracle(orc, material=mat), "material", None) == mat
    model = generators.make_generator(gen, 2)
    assert isinstance(model, generators.CINN) and model.name == gen
    assert get_material("mos2").name == "mos2" and oracles.oracle_class("table").__name__ == "TableOracle"


def test_a_plugin_generator_reads_its_own_weight_files(install: Install, tmp_path: Path) -> None:
    gen = f"{_tag()}_gen"
    install("gen-dist", {"innloop.generators": {gen: f"{gen}:Gen"}}, {gen: GENERATOR.format(name=gen)})
    generators.make_generator(gen, 3).save(tmp_path / "g.pt")
    loaded = generators.load_generator(tmp_path / "g.pt", kind=gen)
    assert loaded.name == gen and type(loaded).__module__ == gen


def test_a_broken_plugin_is_named_and_the_others_still_load(install: Install) -> None:
    tag = _tag()
    good, bad = f"{tag}_good", f"{tag}_bad"
    install(
        "broken-dist",
        {"innloop.materials": {bad: f"{bad}:{bad}"}},
        {bad: "raise ImportError('needs libfoo.so')\n"},
    )
    install("good-dist", {"innloop.materials": {good: f"{good}:{good}"}}, {good: MATERIAL.format(name=good)})
    assert bad in available_materials()  # listed: asking for it says what is wrong
    with pytest.raises(ConfigError) as info:
        get_material(bad)
    msg = str(info.value)
    assert f"{bad} = {bad}:{bad}" in msg and "broken-dist 1.2.3" in msg
    assert "failed to import" in msg and "ImportError: needs libfoo.so" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="libfoo"):  # the problem is kept, not retried
        get_material(bad)
    assert get_material(good).name == good and get_material("mos2").name == "mos2"

    loaded, problems = plugins_of("materials").load_all()
    assert list(loaded) == [good] and list(problems) == [bad] and "libfoo" in problems[bad]


def plugins_of(kind: str) -> plugins.PluginGroup[Any]:
    groups: dict[str, plugins.PluginGroup[Any]] = {
        "materials": base.PLUGINS,
        "oracles": oracles.PLUGINS,
        "generators": generators.PLUGINS,
    }
    return groups[kind]


@pytest.mark.parametrize(
    ("group", "name", "lookup"),
    [
        ("innloop.materials", "mos2", get_material),
        ("innloop.oracles", "mock", oracles.oracle_class),
        ("innloop.generators", "cinn", lambda n: generators.make_generator(n, 2)),
    ],
)
def test_a_plugin_never_shadows_a_builtin(install: Install, group: str, name: str, lookup: Callable) -> None:
    tag = _tag()
    install("shadow-dist", {group: {name: f"{tag}:anything"}})
    with pytest.raises(ConfigError) as info:
        lookup(name)
    msg = str(info.value)
    assert "defined twice" in msg and "built in" in msg and f"{name} = {tag}:anything (shadow-dist 1.2.3)" in msg
    assert tag not in sys.modules  # refused without importing it
    kind = group.removeprefix("innloop.")
    assert list(plugins_of(kind).load_all()[1]) == [name]  # listed as a problem, nothing raises


def test_two_plugins_of_one_name_name_both(install: Install) -> None:
    tag = _tag()
    orc = f"{tag}_orc"
    install("first-dist", {"innloop.oracles": {orc: f"{tag}_a:{orc}"}}, {f"{tag}_a": ORACLE.format(name=orc)})
    install("second-dist", {"innloop.oracles": {orc: f"{tag}_b:{orc}"}}, {f"{tag}_b": ORACLE.format(name=orc)})
    assert oracles.available_oracles().count(orc) == 1
    with pytest.raises(ConfigError, match="defined by 2 plugins") as info:
        oracles.oracle_class(orc)
    assert "first-dist 1.2.3" in str(info.value) and "second-dist 1.2.3" in str(info.value)
    assert oracles.oracle_class("mock").__name__ == "MockOracle"


def test_wrong_objects_are_problems_not_crashes(install: Install) -> None:
    tag = _tag()
    module = f"{tag}_mod"
    source = MATERIAL.format(name=f"{tag}_real") + "\ndef not_a_class():\n    return 1\nclass NoCalls:\n    pass\n"
    source += GENERATOR.format(name=f"{tag}_other")
    install(
        "odd-dist",
        {
            "innloop.materials": {f"{tag}_named": f"{module}:{tag}_real", f"{tag}_num": f"{module}:not_a_class"},
            "innloop.oracles": {f"{tag}_fn": f"{module}:not_a_class", f"{tag}_empty": f"{module}:NoCalls"},
            "innloop.generators": {f"{tag}_gen": f"{module}:Gen", f"{tag}_nogen": f"{module}:NoCalls"},
        },
        {module: source},
    )
    with pytest.raises(ConfigError, match=f"entry point is named '{tag}_named' but its material '{tag}_real'"):
        get_material(f"{tag}_named")
    with pytest.raises(ConfigError, match="expected a Material or a function returning one, got int"):
        get_material(f"{tag}_num")
    with pytest.raises(ConfigError, match="expected an oracle class, got function"):
        oracles.oracle_class(f"{tag}_fn")
    with pytest.raises(ConfigError, match="NoCalls is not an oracle: it has no submit, poll, results, cancel"):
        oracles.oracle_class(f"{tag}_empty")
    with pytest.raises(ConfigError, match=f"Gen.name is '{tag}_other'"):
        generators.make_generator(f"{tag}_gen", 2)
    with pytest.raises(ConfigError, match="expected a TorchGenerator subclass"):
        generators.make_generator(f"{tag}_nogen", 2)
    with pytest.raises(ConfigError, match="is not usable"):
        get_material(f"{tag}_num")


def test_a_plugin_that_looks_itself_up_while_loading_is_an_error(install: Install) -> None:
    mat = f"{_tag()}_self"
    source = f"from agent.core.materials import get_material\nget_material({mat!r})\n"
    install("loop-dist", {"innloop.materials": {mat: f"{mat}:x"}}, {mat: source})
    with pytest.raises(ConfigError, match="asks for itself while it is being loaded"):
        get_material(mat)


def test_unknown_names_list_the_plugins_too(install: Install) -> None:
    tag = _tag()
    orc, mat = f"{tag}_orc", f"{tag}_mat"
    install(
        "demo-dist",
        {"innloop.oracles": {orc: f"{orc}:{orc}"}, "innloop.materials": {mat: f"{tag}_missing:x"}},
        {orc: ORACLE.format(name=orc)},
    )
    with pytest.raises(UnknownNameError, match=orc):
        oracles.oracle_class("nope")
    with pytest.raises(UnknownNameError, match=f"known materials: .*mos2.*{mat}") as info:
        get_material("nope")
    assert "\n" not in str(info.value)


def test_register_oracle_refuses_a_taken_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oracles, "_REGISTRY", dict(oracles._REGISTRY))
    with pytest.raises(ConfigError, match="already registered"):
        oracles.register_oracle("mock", "elsewhere:Mock")
    oracles.register_oracle("mine", "oracles.mock:MockOracle")
    assert "mine" in oracles.available_oracles()


def test_a_campaign_file_names_plugins_like_builtins(install: Install) -> None:
    tag = _tag()
    mat, orc, gen, bad = f"{tag}_mat", f"{tag}_orc", f"{tag}_gen", f"{tag}_bad"
    install(
        "demo-dist",
        {
            "innloop.materials": {mat: f"{mat}:{mat}"},
            "innloop.oracles": {orc: f"{orc}:{orc}", bad: f"{tag}_missing:Oracle"},
            "innloop.generators": {gen: f"{gen}:Gen"},
        },
        {mat: MATERIAL.format(name=mat), orc: ORACLE.format(name=orc), gen: GENERATOR.format(name=gen)},
    )
    data = {
        "name": "plugged",
        "material": mat,
        "targets": [{"value": 0.5}],
        "oracle": {"name": orc, "settings": {"scale": 2.0}},
        "models": {"generator": gen},
    }
    config = config_from_dict(data)
    assert (config.material, config.oracle.name, config.models.generator) == (mat, orc, gen)
    with pytest.raises(ConfigError, match="unknown setting of the"):
        config_from_dict(data | {"oracle": {"name": orc, "settings": {"scael": 2.0}}})
    with pytest.raises(ConfigError) as info:
        config_from_dict(data | {"oracle": {"name": bad}})
    assert f"{bad} = {tag}_missing:Oracle (demo-dist 1.2.3) failed to import" in str(info.value)


def test_a_plugin_material_that_registers_itself_is_found_every_time(install: Install, monkeypatch: Any) -> None:
    """The built-ins' own pattern (`register_material` at import) in a plugin is no clash."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    mat = f"{_tag()}_mat"
    source = MATERIAL.format(name=mat) + "\nfrom agent.core.materials import register_material\n"
    source += f"MATERIAL = register_material({mat}())\n"
    install("self-dist", {"innloop.materials": {mat: f"{mat}:MATERIAL"}}, {mat: source})
    first = get_material(mat)
    assert get_material(mat) is first and get_material(mat).name == mat
