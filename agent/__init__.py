"""innloop's agent, in layers; each subpackage may import only the layers below it.

```
 outer      agent.cli · agent.testing · agent.report · agent.insight   (and flows/, benchmarks/)
 campaign   agent.campaign   config, state, ledger, store, job driver, loop, runner
 design     agent.design     the candidate funnel, acquisition and batch selection, sampling
 engines    agent.models · generators/ · oracles/     (side by side: none imports another)
 core       agent.core       errors, atomic files, paths, design spaces, materials, observations
```

Imports run downward only, and `tests/test_layers.py` checks it with import-linter's
contracts in ``pyproject.toml``. Importing ``agent`` itself loads nothing.
"""
