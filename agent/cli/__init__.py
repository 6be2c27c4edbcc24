"""The ``innloop`` command line (`agent.cli.main`), its live console view and ``doctor``.

The outermost layer: it may import anything below it, and Prefect and Ray only inside
the commands that use them, so ``innloop --help`` starts fast.
"""
