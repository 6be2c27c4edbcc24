"""Materials: design spaces, targets and structure builders, looked up by name.

Built-in materials (``mos2``) register themselves the first time a name is looked up,
so importing this package does no work.
"""

from agent.core.materials.base import Material, Symmetry, available_materials, get_material, register_material
from agent.core.materials.datasets import load_dataset, read_designs, read_observations

__all__ = [
    "Material",
    "Symmetry",
    "available_materials",
    "get_material",
    "load_dataset",
    "read_designs",
    "read_observations",
    "register_material",
]
