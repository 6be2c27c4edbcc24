"""Family coverage on a toy solution set whose families are known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.core.errors import DataError
from agent.design.coverage import Families, believed_families, find_families

BLOBS = np.array([[0.1, 0.1, 0.5], [0.9, 0.1, 0.5], [0.1, 0.9, 0.5], [0.9, 0.9, 0.5]])


def _toy(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    which = rng.integers(4, size=n)
    return BLOBS[which] + rng.normal(0, 0.03, (n, 3)), which


def test_the_known_families_are_found_and_counted() -> None:
    U, which = _toy()
    fam = find_families(U, 4, seed=0)
    assert fam.k == 4 and fam.sizes.sum() == len(U)
    labels = fam.assign(U)
    for blob in range(4):  # each blob is one family, and no family spans two blobs
        assert len(set(labels[which == blob].tolist())) == 1
    assert len(set(labels.tolist())) == 4
    hits = BLOBS[[0, 0, 2]] + 0.01
    assert len(fam.covered(hits)) == 2
    assert fam.curve(np.vstack([hits, BLOBS[[3, 1]]])) == [1, 1, 2, 3, 4]
    assert fam.covered(np.zeros((0, 3))).tolist() == []


def test_the_split_is_reproducible_and_refuses_too_few_solutions() -> None:
    U, _ = _toy(seed=1)
    a, b = find_families(U, 6, seed=3), find_families(U, 6, seed=3)
    np.testing.assert_array_equal(a.centres, b.centres)
    with pytest.raises(DataError, match="cannot split 3 solutions into 5 families"):
        find_families(U[:3], 5)


def test_believed_families_split_only_the_believed_rows() -> None:
    U, which = _toy(seed=2)
    believed = which != 3  # the model believes three of the four blobs
    fam = believed_families(U, believed, 3, seed=0)
    assert fam is not None and fam.k == 3 and fam.sizes.sum() == believed.sum()
    assert len(fam.covered(BLOBS[:3])) == 3
    assert 0.0 < fam.radius < 0.1  # blobs of σ 0.03 in 3-D: members lie ~0.05 from their centre
    few = believed_families(np.vstack([BLOBS[:2], BLOBS[:2]]), np.ones(4, dtype=bool), 10)
    assert few is not None and few.k == 2, "as many families as distinct believed designs"
    assert believed_families(U, np.zeros(len(U), dtype=bool), 3) is None


def test_families_round_trip_and_refuse_bad_data() -> None:
    U, _ = _toy(seed=4)
    fam = find_families(U, 4, seed=0)
    back = Families.from_dict(json.loads(json.dumps(fam.to_dict())))
    np.testing.assert_allclose(back.centres, fam.centres, atol=1e-6)
    assert back.sizes.tolist() == fam.sizes.tolist() and back.radius == pytest.approx(fam.radius, abs=1e-6)
    np.testing.assert_array_equal(back.load(U), np.bincount(fam.assign(U), minlength=4))
    with pytest.raises(DataError, match="do not match"):
        Families.from_dict({"centres": [[0.1, 0.2]], "sizes": [1, 2]})
