"""A demo innloop plugin: everything a second application needs, added from outside innloop.

`material.demo_blend` is a three-parameter recipe (not a crystal: it builds no structure),
`oracle.FormulaOracle` measures it with a closed-form function, and
`generator.DemoCINN` is a conditional INN under a name of its own. innloop finds all
three through the entry points in this package's pyproject.toml.
"""

__version__ = "0.1.0"
