"""Materials: design spaces, targets and structure builders, looked up by name.

A material also declares what the DFT oracles and the strain features need of it (its
atomic-position conventions, its applied field, its unstrained cell), so they never
import a material's module.

Built-in materials (the MX2 family: ``mos2``, ``ws2``, ``mose2``, ``wse2``, ``mote2``)
register themselves the first time a name is looked up, and installed packages add
theirs through the ``innloop.materials`` entry point (`agent.core.plugins`), imported
only when asked for by name; so importing this package does no work.
"""

from agent.core.materials.base import (
    AppliedField,
    Material,
    ReferenceCell,
    Symmetry,
    as_material,
    available_materials,
    get_material,
    register_material,
)
from agent.core.materials.datasets import load_dataset, read_designs, read_observations

__all__ = [
    "AppliedField",
    "Material",
    "ReferenceCell",
    "Symmetry",
    "as_material",
    "available_materials",
    "get_material",
    "load_dataset",
    "read_designs",
    "read_observations",
    "register_material",
]
