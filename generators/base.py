"""The generator contract and the torch machinery every generator shares.

A generator learns ``p(u | y)``: design points ``u`` in unit-box coordinates (shape
``(n, d)``) given a scalar target ``y`` (band gap in eV). Everything model-specific lives
in two hooks, :meth:`TorchGenerator._loss` and :meth:`TorchGenerator._sample`; the base
class owns standardisation, the seeded training loop, target-range checks and the
weight-file format, so all models behave the same to the rest of the loop.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from agent.core.atomic import write_bytes
from agent.core.errors import ConfigError, InnloopError, TargetError

__all__ = [
    "WEIGHTS_FORMAT",
    "FitReport",
    "Generator",
    "NotFittedError",
    "TorchGenerator",
    "TrainConfig",
    "arch_from_dict",
]

WEIGHTS_FORMAT = "innloop.generator/1"
SCHEDULES = ("onecycle", "cosine", "constant")


class NotFittedError(InnloopError, RuntimeError):
    """A generator was asked to sample before it was ever trained."""


@dataclass
class TrainConfig:
    """Optimisation settings; ``None`` epochs mean "the model's own default".

    ``warm_epochs`` is what a warm start (continuing from fitted weights) runs; it
    defaults to a quarter of ``epochs`` because the weights are already close.
    """

    epochs: int | None = None
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    warm_epochs: int | None = None
    seed: int = 0
    progress: bool = False
    grad_clip: float | None = 10.0
    schedule: str = "onecycle"

    def __post_init__(self) -> None:
        for name in ("epochs", "warm_epochs"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ConfigError(f"TrainConfig.batch_size must be a positive integer, got {self.batch_size!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"TrainConfig.seed must be a non-negative integer, got {self.seed!r}")
        if not _positive(self.lr):
            raise ConfigError(f"TrainConfig.lr must be a positive finite number, got {self.lr!r}")
        if not _positive(self.weight_decay, allow_zero=True):
            raise ConfigError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not _positive(self.grad_clip):
            raise ConfigError(f"TrainConfig.grad_clip must be positive or None, got {self.grad_clip!r}")
        if not isinstance(self.progress, bool):
            raise ConfigError(f"TrainConfig.progress must be a bool, got {self.progress!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"TrainConfig.schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")

    def resolved(self, default_epochs: int) -> tuple[int, int]:
        """``(epochs, warm_epochs)`` with the model default filled in."""
        epochs = self.epochs if self.epochs is not None else default_epochs
        warm = self.warm_epochs if self.warm_epochs is not None else max(1, epochs // 4)
        return epochs, warm


@dataclass
class FitReport:
    """What one call to ``fit`` did; ``losses`` holds the mean loss of each epoch."""

    epochs: int
    final_loss: float
    seconds: float
    warm_started: bool
    losses: list[float] = field(default_factory=list)


@runtime_checkable
class Generator(Protocol):
    """What the design loop needs from any inverse model of ``p(u | y)``."""

    name: str
    dim: int

    @property
    def fitted(self) -> bool: ...

    @property
    def target_range(self) -> tuple[float, float]: ...

    def fit(self, U: Tensor, y: Tensor, *, config: TrainConfig | None = None, warm_start: bool = True) -> FitReport: ...

    def sample(self, target: float, n: int, *, seed: int) -> Tensor: ...

    def save(self, path: str | os.PathLike[str]) -> None: ...


def arch_from_dict(arch_type: type[Any], values: dict[str, Any], *, kind: str) -> Any:
    """Build an architecture dataclass, naming any unknown keys instead of a bare TypeError."""
    known = {f.name for f in fields(arch_type)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"generator {kind!r} has no architecture option(s) {unknown}; known: {sorted(known)}")
    return arch_type(**values)


class TorchGenerator(nn.Module):
    """Shared base: standardisation, seeded training, checked sampling, weight files.

    Standardisation buffers are set on the first fit and kept on warm starts, so that
    continued training sees inputs on the same scale the weights were trained on.
    Subclasses set ``name``/``default_epochs``/``arch_type`` and implement ``_loss``
    and ``_sample``; ``arch`` is their architecture dataclass (saved with the weights).
    """

    name: str = "base"
    default_epochs: ClassVar[int] = 100
    arch_type: ClassVar[type[Any]]

    u_mean: Tensor
    u_std: Tensor
    y_mean: Tensor
    y_std: Tensor
    y_min: Tensor
    y_max: Tensor
    is_fitted: Tensor

    def __init__(self, dim: int, arch: Any) -> None:
        super().__init__()
        if not _is_int(dim) or dim < 1:
            raise ConfigError(f"generator dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.arch = arch
        self._progress = 0.0  # fraction of the current fit done; for annealed loss terms
        self.register_buffer("u_mean", torch.zeros(self.dim))
        self.register_buffer("u_std", torch.ones(self.dim))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        self.register_buffer("y_min", torch.zeros(()))
        self.register_buffer("y_max", torch.zeros(()))
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))

    # -- model hooks ---------------------------------------------------------------
    @classmethod
    def from_arch_dict(cls, dim: int, arch: dict[str, Any]) -> Self:
        """Build an unfitted instance from a plain architecture dict (as saved in files)."""
        return cls(dim, arch_from_dict(cls.arch_type, arch, kind=cls.name))

    def _loss(self, u_std: Tensor, y_std: Tensor, gen: torch.Generator) -> Tensor:
        """Scalar training loss of a batch: ``u_std`` (b, d), ``y_std`` (b, 1)."""
        raise NotImplementedError

    def _sample(self, y_std: Tensor, gen: torch.Generator) -> Tensor:
        """Standardised samples (n, d) for standardised targets ``y_std`` (n, 1)."""
        raise NotImplementedError

    def _to_model(self, u: Tensor) -> Tensor:
        """Optional fixed map (n, d) -> (n, d) from the unit box to the space the model
        learns in, applied before standardisation; the identity unless overridden."""
        return u

    def _from_model(self, v: Tensor) -> Tensor:
        """Inverse of :meth:`_to_model`, applied to samples after de-standardisation."""
        return v

    # -- public API ------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return bool(self.is_fitted.item())

    @property
    def target_range(self) -> tuple[float, float]:
        """Smallest and largest training target seen; sampling refuses anything outside."""
        return float(self.y_min.item()), float(self.y_max.item())

    def default_train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.default_epochs)

    def arch_dict(self) -> dict[str, Any]:
        return dict(asdict(self.arch))

    def fit(self, U: Tensor, y: Tensor, *, config: TrainConfig | None = None, warm_start: bool = True) -> FitReport:
        """Train on ``U`` (n, d) unit-box points with targets ``y`` (n,).

        Continues from the current weights (``warm_epochs``) when already fitted and
        ``warm_start`` is true; otherwise re-initialises deterministically from the seed.
        """
        u, t = self._check_data(U, y)
        cfg = config if config is not None else self.default_train_config()
        epochs, warm_epochs = cfg.resolved(self.default_epochs)
        warm = self.fitted and warm_start
        if warm:
            lo = min(self.target_range[0], float(t.min()))
            hi = max(self.target_range[1], float(t.max()))
            epochs = warm_epochs
        else:
            self._reinitialise(cfg.seed)
            self._set_standardisation(self._to_model(u), t)
            lo, hi = float(t.min()), float(t.max())
        u_std = (self._to_model(u) - self.u_mean) / self.u_std
        y_std = ((t - self.y_mean) / self.y_std).unsqueeze(1)
        start = time.perf_counter()
        losses = self._train(u_std, y_std, cfg, epochs)
        self.y_min.fill_(lo)
        self.y_max.fill_(hi)
        self.is_fitted.fill_(True)
        return FitReport(
            epochs=epochs,
            final_loss=losses[-1],
            seconds=time.perf_counter() - start,
            warm_started=warm,
            losses=losses,
        )

    def sample(self, target: float, n: int, *, seed: int) -> Tensor:
        """Draw ``n`` design points (n, d) in unit-box coordinates for one target.

        Deterministic for a given ``seed`` (a local RNG, never the global one). Samples
        are not clipped: points outside the box are for the down-selection to judge.
        """
        if not self.fitted:
            raise NotFittedError(f"generator {self.name!r} is not fitted; call fit() before sample()")
        if not _is_int(n) or n < 1:
            raise ConfigError(f"number of samples n must be a positive integer, got {n!r}")
        if not _is_int(seed):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        self._check_target(target)
        gen = torch.Generator().manual_seed(int(seed))
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                y_std = torch.full((int(n), 1), (float(target) - float(self.y_mean)) / float(self.y_std))
                out = self._sample(y_std, gen)
                return self._from_model(out * self.u_std + self.u_mean)
        finally:
            self.train(was_training)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the weights atomically (temp file in the same folder, then rename)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": WEIGHTS_FORMAT,
            "kind": self.name,
            "dim": self.dim,
            "arch": self.arch_dict(),
            "state_dict": self.state_dict(),
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        write_bytes(target, buf.getvalue())

    # -- internals -------------------------------------------------------------------
    def _check_data(self, U: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        u = torch.as_tensor(U, dtype=torch.float32)
        t = torch.as_tensor(y, dtype=torch.float32)
        if u.ndim != 2 or u.shape[1] != self.dim:
            raise ConfigError(f"U must have shape (n, {self.dim}), got {tuple(u.shape)}")
        if t.ndim != 1:
            raise ConfigError(f"y must have shape (n,), got {tuple(t.shape)}")
        if u.shape[0] != t.shape[0]:
            raise ConfigError(f"U has {u.shape[0]} rows but y has {t.shape[0]}; they must match")
        if u.shape[0] < 2:
            raise ConfigError(f"need at least 2 training rows, got {u.shape[0]}")
        if not bool(torch.isfinite(u).all()):
            raise ConfigError(f"U contains {int((~torch.isfinite(u)).sum())} non-finite value(s) (NaN or inf)")
        if not bool(torch.isfinite(t).all()):
            raise ConfigError(f"y contains {int((~torch.isfinite(t)).sum())} non-finite value(s) (NaN or inf)")
        return u, t

    def _check_target(self, target: float) -> None:
        lo, hi = self.target_range
        if not isinstance(target, numbers.Real) or isinstance(target, bool) or not math.isfinite(target):
            raise TargetError(f"target must be a finite number, got {target!r}")
        value = float(target)
        if not lo <= value <= hi:
            raise TargetError(
                f"target {value:g} lies outside the range of the training data "
                f"[{lo:g}, {hi:g}]; the {self.name!r} generator cannot extrapolate"
            )

    def _set_standardisation(self, u: Tensor, t: Tensor) -> None:
        std = u.std(dim=0)
        self.u_mean.copy_(u.mean(dim=0))
        self.u_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))
        y_std = t.std()
        self.y_mean.fill_(float(t.mean()))
        self.y_std.fill_(float(y_std) if float(y_std) > 1e-8 else 1.0)

    def _reinitialise(self, seed: int) -> None:
        """Reset every parameter from ``seed`` without disturbing the global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in self.modules():
                reset = getattr(module, "reset_parameters", None)
                if module is not self and callable(reset):
                    reset()
            for module in self.modules():  # e.g. zeroed last layers: fresh flows start at identity
                init = getattr(module, "init_identity", None)
                if callable(init):
                    init()

    def _train(self, u_std: Tensor, y_std: Tensor, cfg: TrainConfig, epochs: int) -> list[float]:
        n = u_std.shape[0]
        batch = min(cfg.batch_size, n)
        steps = max(1, n // batch)  # drop the ragged tail; reshuffling covers it next epoch
        gen = torch.Generator().manual_seed(cfg.seed)
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = _make_schedule(opt, cfg, epochs * steps)
        history: list[float] = []
        self.train()
        bar = tqdm(range(epochs), disable=not cfg.progress, desc=f"fit {self.name}", leave=False)
        for epoch in bar:
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for step in range(steps):
                self._progress = (epoch * steps + step) / (epochs * steps)
                idx = perm[step * batch : (step + 1) * batch]
                loss = self._loss(u_std[idx], y_std[idx], gen)
                if not bool(torch.isfinite(loss)):
                    raise InnloopError(
                        f"training of generator {self.name!r} diverged (non-finite loss) at epoch "
                        f"{epoch + 1}; lower the learning rate or tighten grad_clip"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                if sched is not None:
                    sched.step()
                total += float(loss.detach())
            history.append(total / steps)
            bar.set_postfix(loss=f"{history[-1]:.4f}")
        self._progress = 1.0
        self.eval()
        return history


def _make_schedule(
    opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total_steps, 2))
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1), eta_min=cfg.lr * 0.01)
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive(value: object, *, allow_zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0
