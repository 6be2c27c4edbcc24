from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.models.model import Model
from botorch.posteriors.ensemble import EnsemblePosterior

from agent.core.errors import ConfigError, DataError, WeightsError
from agent.models.surrogate import EnsembleConfig, SurrogateEnsemble, calibration_report


def test_is_a_botorch_model_with_ensemble_posterior(small_ensemble: SurrogateEnsemble) -> None:
    assert isinstance(small_ensemble, Model)
    X = torch.rand(4, 5, 3)  # batch x q x d
    post = small_ensemble.posterior(X)
    assert isinstance(post, EnsemblePosterior)
    assert post.mean.shape == (4, 5, 1)
    assert post.variance.shape == (4, 5, 1)
    assert post.ensemble_size == small_ensemble.config.members
    assert (post.mean >= 0).all(), "a gap is never negative"


def test_learns_the_function_and_zero_region(synthetic_data, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    U, y = synthetic_data
    rep = calibration_report(small_ensemble, U[2500:], y[2500:])
    assert rep["mae"] < 0.03, rep
    mean, _ = small_ensemble.predict(U[2500:])
    metals = y[2500:] == 0
    assert np.median(mean[metals]) == 0.0


def test_sigma_calibration_reaches_reasonable_coverage(synthetic_data, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    U, y = synthetic_data
    rep = calibration_report(small_ensemble, U[2500:], y[2500:])
    assert 0.8 <= rep["coverage_2sigma"] <= 1.0, rep
    assert rep["coverage_1sigma"] <= rep["coverage_2sigma"]
    assert float(small_ensemble.sigma_scale) > 0


def test_deterministic_and_save_load_round_trip(tmp_path, synthetic_data) -> None:  # type: ignore[no-untyped-def]
    U, y = synthetic_data
    cfg = EnsembleConfig(members=2, hidden=16, layers=1, epochs=3, seed=7)
    a, b = SurrogateEnsemble(3, cfg), SurrogateEnsemble(3, EnsembleConfig(**vars(cfg)))
    a.fit(U[:500], y[:500])
    b.fit(U[:500], y[:500])
    np.testing.assert_array_equal(a.predict(U[:50])[0], b.predict(U[:50])[0])
    path = a.save(tmp_path / "s.pt")
    c = SurrogateEnsemble.load(path)
    np.testing.assert_array_equal(a.predict(U[:50])[0], c.predict(U[:50])[0])
    np.testing.assert_array_equal(a.predict(U[:50])[1], c.predict(U[:50])[1])


def test_warm_start_continues_with_fewer_epochs(synthetic_data) -> None:  # type: ignore[no-untyped-def]
    U, y = synthetic_data
    m = SurrogateEnsemble(3, EnsembleConfig(members=2, hidden=16, layers=1, epochs=4, warm_epochs=1))
    first = m.fit(U[:400], y[:400])
    x_mean = m.x_mean.clone()
    again = m.fit(U[:800], y[:800])
    assert not first.warm_started and again.warm_started
    assert again.epochs == 1
    assert torch.equal(m.x_mean, x_mean), "standardisation is kept on a warm start"


@pytest.mark.parametrize(
    "payload",
    [b"not a torch file", b""],
)
def test_corrupt_weight_file_is_one_clear_error(tmp_path, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "bad.pt"
    p.write_bytes(payload)
    with pytest.raises(WeightsError, match=r"bad\.pt"):
        SurrogateEnsemble.load(p)


def test_truncated_or_foreign_weight_files(tmp_path, small_ensemble) -> None:  # type: ignore[no-untyped-def]
    good = small_ensemble.save(tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:200])
    with pytest.raises(WeightsError, match=r"cut\.pt"):
        SurrogateEnsemble.load(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="format tag"):
        SurrogateEnsemble.load(tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="does not exist"):
        SurrogateEnsemble.load(tmp_path / "missing.pt")


def test_bad_training_inputs(synthetic_data) -> None:  # type: ignore[no-untyped-def]
    U, y = synthetic_data
    m = SurrogateEnsemble(3, EnsembleConfig(members=2, hidden=8, layers=1, epochs=1))
    bad = U[:100].copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="finite"):
        m.fit(bad, y[:100])
    with pytest.raises(DataError, match="shape"):
        m.fit(U[:100], y[:99])
    with pytest.raises(DataError, match="shape"):
        m.fit(U[:100, :2], y[:100])


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="members"):
        EnsembleConfig(members=1)
    with pytest.raises(ConfigError, match="calibration_fraction"):
        EnsembleConfig(calibration_fraction=0.7)


def calibration_spy(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The rows each later ``fit`` calibrates σ on (its held-out split), in call order."""
    seen: list[np.ndarray] = []
    original = SurrogateEnsemble._fit_scale

    def spy(self: SurrogateEnsemble, U: np.ndarray, y: np.ndarray) -> float:
        seen.append(np.array(U))
        return original(self, U, y)

    monkeypatch.setattr(SurrogateEnsemble, "_fit_scale", spy)
    return seen


def test_rows_outside_calibrate_are_trained_on_but_never_calibrate_sigma(
    synthetic_data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A campaign's 60 measurements and 600 replayed rows: σ is calibrated on measurements only."""
    U, y = synthetic_data[0][:660], synthetic_data[1][:660]
    seen = calibration_spy(monkeypatch)
    cfg = EnsembleConfig(members=2, hidden=16, layers=1, epochs=2, seed=3)
    summary = SurrogateEnsemble(3, cfg).fit(U, y, calibrate=np.arange(660) < 60)
    assert summary.n_calibration == len(seen[0]) == 6 and summary.n_train == 654  # 10 % of the 60, not of 660
    assert all((U[:60] == row).all(1).any() for row in seen[0])
    SurrogateEnsemble(3, cfg).fit(U[:60], y[:60])  # the held-out rows are those the measurements alone give
    np.testing.assert_array_equal(seen[1], seen[0])
    with pytest.raises(DataError, match="calibrate must have shape"):
        SurrogateEnsemble(3, cfg).fit(U, y, calibrate=np.ones(5, dtype=bool))


def test_the_calibration_split_without_a_mask_is_the_seeded_share_of_groups(
    synthetic_data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``calibrate`` (or with every row eligible) a fit is what it always was: bit for bit."""
    U, y = synthetic_data[0][:200], synthetic_data[1][:200]
    groups = np.arange(200) // 2
    seen = calibration_spy(monkeypatch)
    cfg = EnsembleConfig(members=2, hidden=16, layers=1, epochs=3, seed=5)
    a, b = SurrogateEnsemble(3, cfg), SurrogateEnsemble(3, cfg)
    first = a.fit(U, y, groups)
    second = b.fit(U, y, groups, calibrate=np.ones(200, dtype=bool))
    held = np.random.default_rng(cfg.seed).permutation(np.unique(groups))[:10]  # round(0.1 × 100 groups)
    np.testing.assert_array_equal(seen[0], U[np.isin(groups, held)])
    np.testing.assert_array_equal(seen[1], seen[0])
    assert first.sigma_scale == second.sigma_scale and first.n_calibration == 20
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
