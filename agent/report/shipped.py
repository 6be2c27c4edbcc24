"""Reproduce the report cache entries shipped in ``agent/report/data/``: ``python -m agent.report.shipped``.

Why ship any: the default report embeds the same 2000 rows of the bundled MoS2 data in
every campaign, and fitting that UMAP the first time on a machine costs umap-learn's
import and numba's compilation (about 35 s of CPU on a fresh install) for a result
no campaign changes. The file is an ordinary cache entry (`agent.report.cache`): named
by the hash of the rows and the settings, checksummed, and ignored (the embedding is
then fitted and cached under the state folder) when either differs. Like
``oracles/data/mock_mos2.npz`` it is a fit, reproduced by this command; umap-learn's
fit is deterministic for a seed on one machine, and may differ in the last digits on
another.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from agent.report.cache import SHIPPED, ArrayCache
from agent.report.embed import embed, embedding_key, subsample

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Fit the default report's data embedding (``--points``, ``--seed``) and write it to ``--out``."""
    from agent.core.materials import get_material  # only when regenerating: keeps the report's import light
    from agent.design.trained import training_data

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--material", default="mos2")
    p.add_argument("--points", type=int, default=2000, help="as ReportOptions.umap_points")
    p.add_argument("--seed", type=int, default=0, help="as ReportOptions.seed")
    p.add_argument("--out", type=Path, default=SHIPPED)
    args = p.parse_args(argv)
    material = get_material(args.material)
    data = training_data(material)
    U = material.space.to_unit(data.X[subsample(len(data.X), args.points, args.seed)])
    xy = embed(U, seed=args.seed)
    path = ArrayCache(args.out, shipped=()).store("umap", embedding_key(U, args.seed), {"xy": xy})
    print(f"{path}: {len(xy)} designs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
