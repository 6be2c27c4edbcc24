"""Materials: design spaces, targets and structure builders, looked up by name.

A material also declares what the DFT oracles and the strain features need of it (its
atomic-position conventions, its applied field, its unstrained cell), so they never
import a material's module.

Built-in materials (``mos2``) register themselves the first time a name is looked up,
so importing this package does no work.
"""

from agent.core.materials.base import (
    AppliedField,
    Material,
    ReferenceCell,
    Symmetry,
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
    "available_materials",
    "get_material",
    "load_dataset",
    "read_designs",
    "read_observations",
    "register_material",
]
