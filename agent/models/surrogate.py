"""A deep-ensemble surrogate of a non-negative property (band gap), exposed as a BoTorch model.

Why this shape:
- Members are trained side by side as one batched network (weights ``(M, in, out)``,
  one ``baddbmm`` per layer), so five members cost little more than one on a CPU.
- Most MoS2 cells are metals (gap exactly 0). Each member predicts a *signed gap*
  ``f``; the gap is ``relu(f)``. Metals are trained with a one-sided hinge
  ``relu(f + margin)`` (any value safely below zero is right), insulators with an L1
  loss. The signed gap stays informative inside the metallic region, which is what
  localization towards a 0 eV target needs.
- The spread across members is rescaled by one factor fitted on held-out calibration
  groups, so that ±2σ covers about 95 % of unseen rows. Rows that are not measurements
  (a transfer source's replay) can be kept out of that split (``fit(calibrate=...)``).

Inputs are unit-box coordinates ``u`` in ``[0, 1]^d`` (see `agent.core.space.DesignSpace`).
"""

from __future__ import annotations

import io
import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from botorch.models.ensemble import EnsembleModel
from torch import Tensor, nn
from tqdm.auto import tqdm

from agent.core.atomic import write_bytes
from agent.core.errors import ConfigError, DataError, WeightsError, one_line

__all__ = ["EnsembleConfig", "FitSummary", "SurrogateEnsemble", "calibration_report"]

_FORMAT = "innloop.surrogate/1"


@dataclass
class EnsembleConfig:
    """Architecture and training settings of the ensemble."""

    members: int = 5
    hidden: int = 256
    layers: int = 3
    epochs: int = 500
    warm_epochs: int = 100
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    metal_margin: float = 0.05
    calibration_fraction: float = 0.1
    target_coverage: float = 0.95
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("members", "hidden", "layers", "epochs", "warm_epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"EnsembleConfig.{name} must be a positive integer")
        if self.members < 2:
            raise ConfigError("EnsembleConfig.members must be at least 2 to give a variance")
        if not 0.0 <= self.calibration_fraction < 0.5:
            raise ConfigError("EnsembleConfig.calibration_fraction must be in [0, 0.5)")
        if not 0.5 < self.target_coverage < 1.0:
            raise ConfigError("EnsembleConfig.target_coverage must be in (0.5, 1)")
        if self.lr <= 0 or self.metal_margin < 0:
            raise ConfigError("EnsembleConfig.lr must be > 0 and metal_margin >= 0")


@dataclass
class FitSummary:
    """What a fit did; ``sigma_scale`` is the calibration factor applied to the spread."""

    epochs: int
    seconds: float
    final_loss: float
    sigma_scale: float
    warm_started: bool
    n_train: int
    n_calibration: int
    history: list[float] = field(default_factory=list)


class _BatchedMLP(nn.Module):
    """``M`` independent MLPs evaluated together: ``(M, n, d) -> (M, n)``."""

    def __init__(self, members: int, dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        sizes = [dim] + [hidden] * layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, h: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = nn.functional.silu(h)
        return h.squeeze(-1)


class SurrogateEnsemble(EnsembleModel):
    """Deep ensemble over unit-box inputs; ``posterior(X)`` gives mean and variance across members.

    ``posterior(X)``: ``X`` is ``batch x q x d``; values are ``batch x M x q x 1`` (gaps in
    the property's unit, spread already calibrated).
    """

    def __init__(self, dim: int, config: EnsembleConfig | None = None) -> None:
        super().__init__()
        self.config = config or EnsembleConfig()
        self.dim = int(dim)
        self._num_outputs = 1
        self.net = _BatchedMLP(self.config.members, self.dim, self.config.hidden, self.config.layers)
        self.register_buffer("x_mean", torch.zeros(self.dim))
        self.register_buffer("x_std", torch.ones(self.dim))
        self.register_buffer("sigma_scale", torch.ones(()))
        self.register_buffer("y_range", torch.tensor([0.0, 0.0]))
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))

    @property
    def fitted(self) -> bool:
        return bool(self.is_fitted)

    # -- prediction ----------------------------------------------------------------
    def signed(self, U: Tensor) -> Tensor:
        """Per-member signed gap, ``(..., n, d) -> (M, ..., n)``; differentiable in ``U``."""
        lead = U.shape[:-1]
        flat = ((U.reshape(-1, self.dim) - self.x_mean) / self.x_std).to(self.x_mean.dtype)
        out = self.net(flat.unsqueeze(0).expand(self.config.members, -1, -1))
        return out.reshape(self.config.members, *lead)

    def forward(self, X: Tensor) -> Tensor:
        """``batch x q x d -> batch x M x q x 1`` calibrated member gaps."""
        gaps = torch.relu(self.signed(X))
        mean = gaps.mean(dim=0, keepdim=True)
        gaps = mean + self.sigma_scale * (gaps - mean)
        return gaps.movedim(0, -2).unsqueeze(-1)

    @torch.no_grad()
    def predict(self, U: Tensor | np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation ``(n,)`` each, through ``posterior``, in chunks."""
        Ut = torch.as_tensor(np.asarray(U, dtype=np.float32) if not isinstance(U, Tensor) else U)
        Ut = Ut.to(self.x_mean.dtype)
        means, stds = [], []
        for part in torch.split(Ut, chunk):
            post = self.posterior(part.unsqueeze(0))
            means.append(post.mean[0, :, 0])
            stds.append(post.variance[0, :, 0].clamp_min(0).sqrt())
        return torch.cat(means).numpy().astype(np.float64), torch.cat(stds).numpy().astype(np.float64)

    # -- training ------------------------------------------------------------------
    def fit(
        self,
        U: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None = None,
        *,
        warm_start: bool = True,
        calibrate: np.ndarray | None = None,
    ) -> FitSummary:
        """Train on unit-box ``U (n, d)`` and targets ``y (n,)``; ``groups`` keeps duplicates together.

        ``calibrate``: boolean ``(n,)``, the rows the σ calibration may hold out (default
        all). Rows outside it are always trained on and never calibrate σ: a campaign's
        replayed transfer rows are a model's labels, not measurements (`agent.models.transfer`).
        The split is drawn among the eligible rows' groups only, so with rows appended
        outside it the held-out rows are those the eligible rows alone would give.
        """
        U, y = _check_xy(U, y, self.dim)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        if groups.shape != y.shape:
            raise DataError(f"groups must have shape {y.shape}, got {groups.shape}")
        eligible = np.ones(len(y), dtype=bool) if calibrate is None else np.asarray(calibrate, dtype=bool)
        if eligible.shape != y.shape:
            raise DataError(f"calibrate must have shape {y.shape}, got {eligible.shape}")
        cfg = self.config
        warm = warm_start and self.fitted
        rng = np.random.default_rng(cfg.seed)
        uniq = rng.permutation(np.unique(groups[eligible]))
        n_cal_groups = round(cfg.calibration_fraction * len(uniq))
        cal_mask = np.isin(groups, uniq[:n_cal_groups]) & eligible
        tr_U, tr_y = U[~cal_mask], y[~cal_mask]
        if len(tr_y) < 2:
            raise DataError("need at least two training rows outside the calibration split")
        torch.manual_seed(cfg.seed)
        if not warm:
            self.net = _BatchedMLP(cfg.members, self.dim, cfg.hidden, cfg.layers)
            self.x_mean = torch.as_tensor(tr_U.mean(0), dtype=torch.float32)
            self.x_std = torch.as_tensor(tr_U.std(0) + 1e-6, dtype=torch.float32)
        epochs = cfg.warm_epochs if warm else cfg.epochs
        history = self._train(tr_U, tr_y, epochs)
        self.y_range = torch.tensor([float(y.min()), float(y.max())])
        self.is_fitted = torch.ones((), dtype=torch.bool)
        scale = 1.0
        if cal_mask.any():
            self.sigma_scale = torch.ones(())
            scale = self._fit_scale(U[cal_mask], y[cal_mask])
        self.sigma_scale = torch.tensor(scale, dtype=torch.float32)
        return FitSummary(
            epochs=epochs,
            seconds=0.0 if not history else history[-1][1],
            final_loss=history[-1][0] if history else float("nan"),
            sigma_scale=scale,
            warm_started=warm,
            n_train=len(tr_y),
            n_calibration=int(cal_mask.sum()),
            history=[h[0] for h in history],
        )

    def _train(self, U: np.ndarray, y: np.ndarray, epochs: int) -> list[tuple[float, float]]:
        cfg = self.config
        Xt = torch.as_tensor(U, dtype=torch.float32)
        yt = torch.as_tensor(y, dtype=torch.float32)
        n = len(yt)
        bs = min(cfg.batch_size, n)
        steps = max(1, n // bs)
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=epochs * steps)
        gen = torch.Generator().manual_seed(cfg.seed)
        Xs = (Xt - self.x_mean) / self.x_std
        history: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        self.train()
        bar = tqdm(range(epochs), desc="surrogate", disable=not cfg.progress, leave=False)
        for _ in bar:
            order = torch.stack([torch.randperm(n, generator=gen) for _ in range(cfg.members)])
            total = 0.0
            for i in range(steps):
                idx = order[:, i * bs : (i + 1) * bs]
                f = self.net(Xs[idx])
                yb = yt[idx]
                loss = torch.where(yb > 0, (f - yb).abs(), torch.relu(f + cfg.metal_margin)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
            history.append((total / steps, time.perf_counter() - t0))
            bar.set_postfix(loss=f"{history[-1][0]:.4f}")
        self.eval()
        return history

    def _fit_scale(self, U: np.ndarray, y: np.ndarray) -> float:
        """Smallest factor ``s`` with ``|y - mean| <= 2 s σ`` on ``target_coverage`` of rows."""
        mean, std = self.predict(U)
        err = np.abs(y - mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(err <= 1e-6, 0.0, np.where(std > 0, err / std, np.inf))
        k = min(len(ratio) - 1, math.ceil(self.config.target_coverage * len(ratio)) - 1)
        needed = float(np.sort(ratio)[k]) / 2.0
        return float(np.clip(needed if np.isfinite(needed) else 50.0, 0.25, 50.0))

    # -- persistence ---------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write weights atomically; read back with `SurrogateEnsemble.load` (``weights_only``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg = {k: v for k, v in asdict(self.config).items()}
        payload = {"format": _FORMAT, "dim": self.dim, "config": cfg, "state_dict": self.state_dict()}
        buf = io.BytesIO()
        torch.save(payload, buf)
        write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> SurrogateEnsemble:
        path = Path(path)
        try:
            payload: Any = torch.load(path, weights_only=True, map_location="cpu")
        except FileNotFoundError:
            raise WeightsError(f"surrogate weight file {path} does not exist") from None
        except Exception as exc:  # torch raises many types for bad bytes; all mean "unreadable"
            raise WeightsError(f"surrogate weight file {path} is unreadable or corrupt: {one_line(exc)}") from None
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise WeightsError(f"{path} is not an innloop surrogate weight file (format tag missing)")
        try:
            model = cls(int(payload["dim"]), EnsembleConfig(**payload["config"]))
            model.load_state_dict(payload["state_dict"])
        except Exception as exc:
            raise WeightsError(f"{path}: weights do not match a surrogate ensemble: {one_line(exc)}") from None
        model.eval()
        return model


def calibration_report(model: SurrogateEnsemble, U: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """MAE and coverage of ±1σ / ±2σ on held-out rows (coverage of a Gaussian: 68 % / 95 %)."""
    mean, std = model.predict(U)
    err = np.abs(np.asarray(y, dtype=np.float64) - mean)
    return {
        "n": float(len(err)),
        "mae": float(err.mean()),
        "mae_nonzero": float(err[y > 0].mean()) if (y > 0).any() else float("nan"),
        "coverage_1sigma": float((err <= std + 1e-9).mean()),
        "coverage_2sigma": float((err <= 2 * std + 1e-9).mean()),
        "mean_sigma": float(std.mean()),
    }


def _check_xy(U: np.ndarray, y: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    U = np.asarray(U, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if U.ndim != 2 or U.shape[1] != dim:
        raise DataError(f"inputs must have shape (n, {dim}), got {U.shape}")
    if y.shape != (len(U),):
        raise DataError(f"targets must have shape ({len(U)},), got {y.shape}")
    if not (np.isfinite(U).all() and np.isfinite(y).all()):
        raise DataError("inputs and targets must be finite (found NaN or inf)")
    return U, y
