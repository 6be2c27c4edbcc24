"""The mock oracle's "physics": a small fixed network, evaluated with numpy in float64.

Why its own evaluator: oracles sit below the models layer and may not import
`agent.models`, and an oracle that answers from three matrix products should not need
torch (seconds of import, a large dependency) to do it. The network is the shape of
`agent.models.surrogate.SurrogateEnsemble` (``M`` members, SiLU between layers, inputs
standardised by ``x_mean``/``x_std``), and the answer is the members' mean of
``relu(signed gap)``; ``scripts/fit_mock_oracle.py`` fits it with the surrogate and
writes it here, and a test holds this evaluator to the surrogate's numbers.

Why ``.npz``: plain arrays read with ``allow_pickle=False``, so loading a weight file
can execute no code (what ``torch.load(weights_only=True)`` guarantees for torch files),
and exactly the float32 values the fit produced; the evaluation is float64.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.core.atomic import write_bytes
from agent.core.errors import WeightsError

__all__ = ["FORMAT", "Emulator"]

FORMAT = "innloop.emulator/1"


@dataclass(frozen=True)
class Emulator:
    """``M`` small MLPs over unit-box inputs ``(n, d)``: weights ``(M, in, out)``, biases ``(M, 1, out)``."""

    x_mean: np.ndarray  # (d,) input standardisation
    x_std: np.ndarray  # (d,)
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        _check_shapes(self)

    @property
    def dim(self) -> int:
        return int(self.x_mean.shape[0])

    @property
    def members(self) -> int:
        return int(self.weights[0].shape[0])

    def signed(self, U: np.ndarray) -> np.ndarray:
        """Per-member signed gap, ``(n, d) -> (M, n)``, in float64."""
        U = np.asarray(U, dtype=np.float64)
        if U.ndim != 2 or U.shape[1] != self.dim:
            raise WeightsError(f"the emulator takes inputs of shape (n, {self.dim}), got {U.shape}")
        h = (U - self.x_mean.astype(np.float64)) / self.x_std.astype(np.float64)
        h = np.broadcast_to(h, (self.members, *h.shape))
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = b.astype(np.float64) + h @ w.astype(np.float64)
            if i < last:
                with np.errstate(over="ignore"):  # exp(-x) -> inf for very negative x gives -0.0, as it should
                    h = h / (1.0 + np.exp(-h))  # SiLU, written as torch's CPU kernel computes it
        out: np.ndarray = h[..., 0]
        return out

    def gap(self, U: np.ndarray) -> np.ndarray:
        """The members' mean of ``relu(signed)``, ``(n,)``: never negative."""
        out: np.ndarray = np.maximum(self.signed(U), 0.0).mean(axis=0)
        return out

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the arrays atomically as ``.npz``; `Emulator.load` reads them back."""
        arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT), "x_mean": self.x_mean, "x_std": self.x_std}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"weight_{i}"] = w
            arrays[f"bias_{i}"] = b
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub reads the mapping as one allow_pickle flag
        return write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Emulator:
        """Read a file written by `save`; `WeightsError` if it is missing, corrupt or not one."""
        path = Path(path)
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # an .npy: one bare array
                raise WeightsError(f"emulator weight file {path} is one array, not an npz archive of the network")
            with loaded as npz:
                arrays = {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            raise WeightsError(f"emulator weight file {path} does not exist") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise WeightsError(f"emulator weight file {path} is unreadable or corrupt: {exc}") from None
        if str(arrays.get("format", "")) != FORMAT:
            raise WeightsError(f"{path} is not an innloop emulator weight file (format tag {FORMAT!r} missing)")
        n_layers = sum(1 for name in arrays if name.startswith("weight_"))
        try:
            return cls(
                arrays["x_mean"],
                arrays["x_std"],
                tuple(arrays[f"weight_{i}"] for i in range(n_layers)),
                tuple(arrays[f"bias_{i}"] for i in range(n_layers)),
            )
        except KeyError as exc:
            raise WeightsError(f"{path} lacks the array {exc}") from None
        except (IndexError, ValueError) as exc:  # arrays of the wrong rank
            raise WeightsError(f"{path}: arrays of the wrong shape ({exc})") from None


def _check_shapes(em: Emulator) -> None:
    """Refuse arrays that do not chain into ``(n, d) -> (M, n)`` or hold non-finite values."""
    arrays = (em.x_mean, em.x_std, *em.weights, *em.biases)
    if not em.weights or len(em.weights) != len(em.biases):
        raise WeightsError("the emulator needs one bias per weight matrix and at least one layer")
    if not all(isinstance(a, np.ndarray) and a.dtype.kind == "f" and np.isfinite(a).all() for a in arrays):
        raise WeightsError("emulator arrays must be finite floating-point arrays")
    d = em.x_mean.shape
    if len(d) != 1 or em.x_std.shape != d or not (em.x_std > 0).all():
        raise WeightsError(f"x_mean and x_std must be (d,) with x_std > 0, got {d} and {em.x_std.shape}")
    fan_in, members = d[0], em.weights[0].shape[0]
    for i, (w, b) in enumerate(zip(em.weights, em.biases, strict=True)):
        if w.ndim != 3 or w.shape[:2] != (members, fan_in) or b.shape != (members, 1, w.shape[2]):
            raise WeightsError(f"layer {i}: weight {w.shape} and bias {b.shape} do not follow ({members}, {fan_in}, k)")
        fan_in = w.shape[2]
    if fan_in != 1:
        raise WeightsError(f"the last layer must have one output, not {fan_in}")
