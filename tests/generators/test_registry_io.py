"""Registry, factory and weight files: every bad file ends in one WeightsError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from agent.core.errors import ConfigError, UnknownNameError, WeightsError
from generators import GENERATORS, WEIGHTS_FORMAT, FitReport, TorchGenerator, load_generator, make_generator


def test_registry_names() -> None:
    assert set(GENERATORS) == {"cinn", "inn", "mdn", "cvae"}
    for name, cls in GENERATORS.items():
        model = make_generator(name, 7)
        assert isinstance(model, cls) and model.name == name and model.dim == 7
        assert not model.fitted


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"'glow'.*\['cinn', 'cvae', 'inn', 'mdn'\]"):
        make_generator("glow", 3)


def test_unknown_arch_option() -> None:
    with pytest.raises(ConfigError, match=r"no architecture option\(s\) \['widht'\]"):
        make_generator("cinn", 3, widht=12)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("cinn", {"blocks": 0}),
        ("cinn", {"y_noise": -0.1}),
        ("inn", {"total_dim": 3}),
        ("mdn", {"min_log_sigma": 2.0, "max_log_sigma": 1.0}),
        ("cvae", {"beta": 0.0}),
    ],
)
def test_bad_arch_values(name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        make_generator(name, 3, **kwargs)


def test_bad_dim() -> None:
    with pytest.raises(ConfigError, match="dim"):
        make_generator("mdn", 0)
    with pytest.raises(ConfigError, match="at least 2"):
        make_generator("cinn", 1)


def test_save_load_round_trip(trained_once: tuple[TorchGenerator, FitReport], tmp_path: Path) -> None:
    model = trained_once[0]
    path = tmp_path / "sub" / f"{model.name}.pt"
    model.save(path)
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temp files left behind"
    loaded = load_generator(path)
    assert type(loaded) is type(model) and loaded.fitted and loaded.dim == model.dim
    assert loaded.target_range == model.target_range
    assert loaded.arch_dict() == model.arch_dict()
    assert torch.equal(loaded.sample(1.0, 50, seed=5), model.sample(1.0, 50, seed=5))
    assert type(load_generator(path, kind=model.name)) is type(model)


def test_saved_header(trained_once: tuple[TorchGenerator, FitReport], tmp_path: Path) -> None:
    model = trained_once[0]
    model.save(tmp_path / "w.pt")
    payload = torch.load(tmp_path / "w.pt", weights_only=True)
    assert payload["format"] == WEIGHTS_FORMAT and payload["kind"] == model.name and payload["dim"] == 2
    assert all(isinstance(v, int | float | str | bool) for v in payload["arch"].values())


def test_unfitted_round_trip(tmp_path: Path, make_tiny: Any) -> None:
    make_tiny("cinn").save(tmp_path / "fresh.pt")
    assert not load_generator(tmp_path / "fresh.pt").fitted


def _assert_weights_error(path: Path, match: str, kind: str | None = None) -> None:
    with pytest.raises(WeightsError) as info:
        load_generator(path, kind=kind)
    assert str(path) in str(info.value)
    assert match in str(info.value), str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    _assert_weights_error(tmp_path / "nope.pt", "file not found")
    _assert_weights_error(tmp_path, "not a regular file")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).byte().numpy().tobytes()
    )
    _assert_weights_error(path, "not a readable torch file")


def test_truncated_file(tmp_path: Path, make_tiny: Any) -> None:
    path = tmp_path / "cut.pt"
    make_tiny("mdn").save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_weights_error(path, "not a readable torch file")


def test_plain_dict_without_tag(tmp_path: Path, make_tiny: Any) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": make_tiny("mdn").state_dict()}, path)
    _assert_weights_error(path, "missing or wrong format tag")
    torch.save(torch.zeros(3), path)
    _assert_weights_error(path, "missing or wrong format tag")


def test_unknown_kind(tmp_path: Path, make_tiny: Any) -> None:
    path = tmp_path / "w.pt"
    make_tiny("mdn").save(path)
    payload = torch.load(path, weights_only=True)
    payload["kind"] = "glow"
    torch.save(payload, path)
    _assert_weights_error(path, "unknown generator kind 'glow'")


def test_weights_of_another_kind(tmp_path: Path, make_tiny: Any) -> None:
    path = tmp_path / "w.pt"
    make_tiny("mdn").save(path)
    _assert_weights_error(path, "holds a 'mdn' generator, expected 'cinn'", kind="cinn")
    payload = torch.load(path, weights_only=True)
    payload["kind"], payload["arch"] = "cinn", {}
    torch.save(payload, path)
    _assert_weights_error(path, "weights do not match a 'cinn' generator")


def test_mismatched_dim_and_arch(tmp_path: Path, make_tiny: Any) -> None:
    path = tmp_path / "w.pt"
    make_tiny("cvae").save(path)
    payload = torch.load(path, weights_only=True)
    payload["dim"] = 5
    torch.save(payload, path)
    _assert_weights_error(path, "weights do not match")
    payload["dim"], payload["arch"] = 2, {"hidden": -4}
    torch.save(payload, path)
    _assert_weights_error(path, "unusable architecture")
