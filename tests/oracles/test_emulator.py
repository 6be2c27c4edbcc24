"""The mock's numpy emulator gives the surrogate's numbers, and reads only what the fit script writes.

The mock once evaluated its weights with `SurrogateEnsemble` in torch; the emulator
replaced it so oracles need neither `agent.models` nor torch. These tests hold the two
evaluations together (a drift in either shows up here), pin the bundled file's answers
to the ones the torch path gave, and check the weight file can carry no code.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from agent.core.errors import WeightsError
from agent.core.materials import get_material, load_dataset
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble
from oracles.emulator import FORMAT, Emulator
from oracles.mock import MockOracle

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "oracles" / "data" / "mock_mos2.npz"
SPACE = get_material("mos2").space


def _fit_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fit_mock_oracle", ROOT / "scripts" / "fit_mock_oracle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _as_surrogate(em: Emulator) -> SurrogateEnsemble:
    """A float64 `SurrogateEnsemble` carrying the emulator's weights (the torch evaluation)."""
    hidden = em.weights[0].shape[2]
    model = SurrogateEnsemble(em.dim, EnsembleConfig(members=em.members, hidden=hidden, layers=len(em.weights) - 1))
    state = {
        "x_mean": em.x_mean,
        "x_std": em.x_std,
        "sigma_scale": np.ones((), np.float32),
        "y_range": np.zeros(2, np.float32),
        "is_fitted": np.ones((), bool),
    }
    state |= {f"net.weights.{i}": w for i, w in enumerate(em.weights)}
    state |= {f"net.biases.{i}": b for i, b in enumerate(em.biases)}
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)
    return model.eval().double()


def _torch_gap(model: SurrogateEnsemble, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-member signed gap, members' mean of relu) as the mock computed them with torch."""
    with torch.no_grad():
        f = model.signed(torch.as_tensor(U, dtype=torch.float64))
    return f.numpy(), torch.relu(f).mean(dim=0).numpy()


def test_numpy_and_torch_evaluations_agree_on_the_data_and_random_designs(tmp_path: Path) -> None:
    em = Emulator.load(BUNDLED)
    rng = np.random.default_rng(7)
    X = np.vstack([load_dataset("mos2").X, SPACE.from_unit(SPACE.sample_unit(rng, 5000))])
    U = SPACE.to_unit(X)
    signed, mean = _torch_gap(_as_surrogate(em), U)
    assert np.abs(em.signed(U) - signed).max() < 1e-12
    mock = MockOracle(workdir=tmp_path).gap(X)
    # the mock rounds to 1e-9 eV: the two evaluations may differ by one rounding step at most
    assert np.abs(mock - np.round(mean, 9)).max() <= 1e-9 + 1e-15
    assert (mock == np.round(mean, 9)).mean() > 0.999


def test_bundled_weights_give_what_the_torch_mock_gave(tmp_path: Path) -> None:
    """Figures the mock gave for the 8638 bundled rows before the emulator (torch evaluating
    ``mock_mos2.pt``, the same weights): a refit or a changed evaluation shows up here."""
    g = MockOracle(workdir=tmp_path).gap(load_dataset("mos2").X)
    assert len(g) == 8638
    assert g[:5].tolist() == pytest.approx([0.0, 0.272198453, 0.0, 0.0, 0.211134406], abs=2e-9)
    assert float(g.sum()) == pytest.approx(2289.276215334, abs=1e-6)
    assert int((g > 0).sum()) == 3181 and float(g.max()) == pytest.approx(2.222709956, abs=2e-9)


def test_the_fit_script_writes_what_the_emulator_reads(tmp_path: Path) -> None:
    fit = _fit_script()
    rng = np.random.default_rng(0)
    U, y = rng.random((64, 3)), np.maximum(rng.normal(0.5, 0.5, 64), 0.0)
    model = SurrogateEnsemble(3, EnsembleConfig(members=2, hidden=8, layers=2, epochs=3, calibration_fraction=0.0))
    model.fit(U, y)
    path = fit.to_emulator(model).save(tmp_path / "w.npz")
    em = Emulator.load(path)
    assert (em.dim, em.members, len(em.weights)) == (3, 2, 3)
    signed, mean = _torch_gap(model.double(), U)
    assert np.abs(em.signed(U) - signed).max() < 1e-12
    assert np.abs(em.gap(U) - mean).max() < 1e-12


def _write_npz(path: Path, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    path.write_bytes(buf.getvalue())
    return path


def test_bad_weight_files_are_refused(tmp_path: Path) -> None:
    em = Emulator.load(BUNDLED)
    good = {"format": np.array(FORMAT), "x_mean": em.x_mean, "x_std": em.x_std}
    layers = {f"weight_{i}": w for i, w in enumerate(em.weights)} | {f"bias_{i}": b for i, b in enumerate(em.biases)}
    with pytest.raises(WeightsError, match="does not exist"):
        Emulator.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(WeightsError, match="unreadable"):
        Emulator.load(tmp_path / "junk.npz")
    truncated = BUNDLED.read_bytes()[:2000]
    (tmp_path / "cut.npz").write_bytes(truncated)
    with pytest.raises(WeightsError, match="unreadable"):
        Emulator.load(tmp_path / "cut.npz")
    with pytest.raises(WeightsError, match="format tag"):
        Emulator.load(_write_npz(tmp_path / "untagged.npz", **{k: v for k, v in good.items() if k != "format"}))
    with pytest.raises(WeightsError, match="lacks"):
        Emulator.load(_write_npz(tmp_path / "half.npz", **good, weight_0=em.weights[0]))
    wrong = layers | {"weight_1": em.weights[1][:, :3]}
    with pytest.raises(WeightsError, match="layer 1"):
        Emulator.load(_write_npz(tmp_path / "shapes.npz", **good, **wrong))
    nan = layers | {"bias_0": np.full_like(em.biases[0], np.nan)}
    with pytest.raises(WeightsError, match="finite"):
        Emulator.load(_write_npz(tmp_path / "nan.npz", **good, **nan))


def test_a_weight_file_cannot_run_code(tmp_path: Path) -> None:
    """An object array in the file would need pickle; the loader refuses it instead of unpickling."""
    em = Emulator.load(BUNDLED)
    arrays = {"format": np.array(FORMAT), "x_mean": em.x_mean, "x_std": em.x_std, "bias_0": em.biases[0]}
    arrays["weight_0"] = np.array([object()], dtype=object)
    path = tmp_path / "pickled.npz"
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    path.write_bytes(buf.getvalue())
    with zipfile.ZipFile(path) as z:
        assert "weight_0.npy" in z.namelist()
    with pytest.raises(WeightsError, match="unreadable"):
        Emulator.load(path)
