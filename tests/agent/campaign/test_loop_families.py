"""The families a batch spread its hits over are kept beside it, so a resumed batch reports them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.campaign.loop import FAMILIES_FILE, read_families, write_families
from agent.core.errors import StateError
from agent.design.coverage import find_families


def test_families_round_trip_beside_the_batch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    fam = find_families(rng.random((60, 3)), 4, seed=0)
    path = tmp_path / FAMILIES_FILE
    write_families(path, (fam, None))
    back = read_families(path)
    assert len(back) == 2 and back[1] is None and back[0] is not None
    np.testing.assert_allclose(back[0].centres, fam.centres, atol=1e-6)
    assert back[0].sizes.tolist() == fam.sizes.tolist()


def test_a_batch_written_before_families_existed_has_none(tmp_path: Path) -> None:
    assert read_families(tmp_path / FAMILIES_FILE) == ()


@pytest.mark.parametrize("text", ["{not json", '[{"centres": [[0.1]], "sizes": [1, 2]}]', '[{"sizes": [1]}]'])
def test_a_damaged_families_file_is_one_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / FAMILIES_FILE
    path.write_text(text)
    with pytest.raises(StateError, match="damaged families file"):
        read_families(path)
