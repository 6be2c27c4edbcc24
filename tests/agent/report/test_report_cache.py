"""The report cache and the map: entries reused, damaged or stale ones recomputed (never trusted),
campaign designs placed on the data's UMAP as umap-learn's transform places them."""

from __future__ import annotations

import io
import pathlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agent.report import ReportOptions, build_report
from agent.report import embed as embed_module
from agent.report.cache import SHIPPED, ArrayCache, cache_dir, content_key
from agent.report.embed import base_embedding, embedding_key, place, subsample

SHAPE = {"xy": (3, 2)}


def test_cache_round_trip_and_every_kind_of_damage_is_a_miss(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path / "c", shipped=())
    key = content_key("test", np.arange(3.0), {"n": 1})
    assert key != content_key("test", np.arange(3.0), {"n": 2}) != content_key("test", np.arange(3.0) + 1e-12)
    assert cache.load("umap", key, SHAPE) is None and cache.misses == 1
    xy = np.arange(6.0).reshape(3, 2)
    path = cache.store("umap", key, {"xy": xy})
    assert path == tmp_path / "c" / f"umap-{key}.npz"
    got = cache.load("umap", key, SHAPE)
    assert got is not None and cache.hits == 1
    np.testing.assert_array_equal(got["xy"], xy)
    good = path.read_bytes()
    assert cache.load("umap", key, {"xy": (4, 2)}) is None  # not what was asked for
    path.write_bytes(good[: len(good) // 2])  # cut short
    assert cache.load("umap", key, SHAPE) is None
    flipped = bytearray(good)
    flipped[good.index(xy.tobytes()) + 3] ^= 0xFF  # one bit of the payload
    path.write_bytes(bytes(flipped))
    assert cache.load("umap", key, SHAPE) is None
    other = content_key("other")
    cache.path("umap", other).write_bytes(good)  # a whole file, under a name that is not its key
    assert cache.load("umap", other, SHAPE) is None
    assert cache.damaged == 4
    with pytest.raises(ValueError):
        cache.path("../x", key)


class _Boom:
    """Unpickling this touches a file: it must never happen when a cache file is read."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


def test_a_cache_file_holding_pickled_objects_is_never_unpickled(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, shipped=())
    key = content_key("boom")
    marker = tmp_path / "unpickled"
    payload = np.array([_Boom(marker)], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), sha256=np.array("x"), xy=payload)
    cache.path("umap", key).write_bytes(buf.getvalue())
    assert cache.load("umap", key, {"xy": (1,)}) is None
    assert not marker.exists()


def test_base_embedding_reuses_recomputes_when_damaged_and_when_the_key_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fake_embed(U: np.ndarray, *, seed: int = 0, **_: Any) -> np.ndarray:
        calls.append(seed)
        return np.column_stack([U.sum(axis=1), U[:, 0] * 0 + seed])

    monkeypatch.setattr(embed_module, "embed", fake_embed)
    cache = ArrayCache(tmp_path, shipped=())
    U = np.random.default_rng(0).random((40, 7))
    first, hit = base_embedding(U, seed=0, cache=cache)
    assert not hit and len(calls) == 1
    again, hit = base_embedding(U, seed=0, cache=cache)
    assert hit and len(calls) == 1
    np.testing.assert_array_equal(again, first)
    path = cache.path("umap", embedding_key(U, 0))
    path.write_bytes(b"not a zip file")
    repaired, hit = base_embedding(U, seed=0, cache=cache)
    assert not hit and len(calls) == 2  # recomputed, not trusted
    np.testing.assert_array_equal(repaired, first)
    assert base_embedding(U, seed=0, cache=cache)[1]  # and written back whole
    assert not base_embedding(U, seed=1, cache=cache)[1]  # another seed: another key
    assert not base_embedding(U[:-1], seed=0, cache=cache)[1]  # other rows: another key
    assert len(calls) == 4 and len(list(tmp_path.glob("umap-*.npz"))) == 3


def test_cache_folder_is_under_the_state_unless_the_environment_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INNLOOP_CACHE_DIR", raising=False)
    assert cache_dir(tmp_path / "state") == tmp_path / "state" / "cache"
    monkeypatch.setenv("INNLOOP_CACHE_DIR", str(tmp_path / "shared"))
    assert cache_dir(tmp_path / "state") == tmp_path / "shared"


def test_the_shipped_embedding_is_the_default_reports_data_sample(tmp_path: Path) -> None:
    from agent.core.materials import get_material
    from agent.design.trained import training_data

    material = get_material("mos2")
    X = training_data(material).X
    opts = ReportOptions()
    U = material.space.to_unit(X[subsample(len(X), opts.umap_points, opts.seed)])
    got = ArrayCache(tmp_path, shipped=(SHIPPED,)).load("umap", embedding_key(U, opts.seed), {"xy": (len(U), 2)})
    assert got is not None, "stale: regenerate it with python -m agent.report.shipped"


def test_place_is_deterministic_and_lands_equal_designs_together() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((200, 5))
    xy_base = rng.random((200, 2)) * 8
    new = np.vstack([rng.random((30, 5)), base[:3], base[:1]])
    start = place(new, base, xy_base, epochs=0)
    np.testing.assert_array_equal(start[30:33], xy_base[:3])  # a data design starts on its own point
    xy = place(new, base, xy_base)
    np.testing.assert_array_equal(xy, place(new, base, xy_base))
    np.testing.assert_array_equal(xy[30], xy[33])  # listed twice, placed once
    assert np.isfinite(xy).all() and xy.shape == (34, 2)
    assert place(new[:0], base, xy_base).shape == (0, 2)


@pytest.mark.slow
def test_place_follows_umap_transform() -> None:
    """On two blobs, `place` lands where umap-learn's own ``transform`` does; the start alone does not."""
    import warnings

    import umap
    from umap.umap_ import smooth_knn_dist

    from agent.report.embed import _sigmas

    rng = np.random.default_rng(1)
    centres = np.array([[0.2] * 6, [0.8] * 6])
    base = np.vstack([c + 0.06 * rng.standard_normal((250, 6)) for c in centres])
    between = 0.5 + 0.08 * rng.standard_normal((40, 6))  # neighbours in both blobs
    new = np.vstack([c + 0.06 * rng.standard_normal((40, 6)) for c in centres] + [between])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = umap.UMAP(n_neighbors=15, min_dist=0.1, n_epochs=200, random_state=0).fit(base)
        theirs = model.transform(new)
    ours = place(new, base, model.embedding_)
    extent = float(np.ptp(model.embedding_, axis=0).max())
    assert np.median(np.linalg.norm(ours - theirs, axis=1)) < 0.05 * extent
    # each blob's new points sit with their blob
    for k in (0, 1):
        blob = model.embedding_[250 * k : 250 * (k + 1)].mean(axis=0)
        assert np.linalg.norm(ours[40 * k : 40 * (k + 1)].mean(axis=0) - blob) < 0.15 * extent
    dist = np.sort(np.linalg.norm(new[:, None] - base[None], axis=2), axis=1)[:, :15].astype(np.float32)
    sigma, _ = smooth_knn_dist(dist, 15.0, local_connectivity=0.0)
    np.testing.assert_allclose(_sigmas(dist.astype(np.float64)), sigma, rtol=1e-4)


def _tables(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.csv"))}


@pytest.mark.slow
def test_a_second_report_reads_the_cache_and_writes_the_same_tables(mock_report: Any, tmp_path: Path) -> None:
    first = mock_report.result
    opts: dict[str, Any] = {"samples": 300, "umap_points": 600}  # as the fixture: no shipped entry, so fitted
    cache = mock_report.state / "cache"
    files = list(cache.glob("umap-*.npz"))
    assert len(files) == 1
    again = build_report(mock_report.state, mock_report.name, ReportOptions(out=tmp_path / "again", **opts))
    assert again.summary["umap_cached"] and not first.summary["umap_cached"]
    assert _tables(again.folder) == _tables(first.folder) and len(_tables(first.folder)) == 17  # families, people too
    files[0].write_bytes(files[0].read_bytes()[:100])  # damaged: refitted, the same map
    third = build_report(mock_report.state, mock_report.name, ReportOptions(out=tmp_path / "third", **opts))
    assert not third.summary["umap_cached"]
    assert _tables(third.folder) == _tables(first.folder)
    other = build_report(
        mock_report.state, mock_report.name, ReportOptions(out=tmp_path / "other", samples=300, umap_points=500)
    )
    assert not other.summary["umap_cached"] and len(list(cache.glob("umap-*.npz"))) == 2
    data = pd.read_csv(other.folder / "umap_data.csv")
    assert len(data) == 500 and data[["u1", "u2"]].notna().all().all()
