"""From trained models to designs worth measuring: the candidate funnel (sample,
down-select, localize, σ cap), acquisition and batch selection, sampling, and the trained
models (`TrainedModels`, the one bundle) with their on-disk cache.

Imports `agent.core`, `agent.models`, `generators` and `oracles`; never the campaign, its
files on disk, or any outer layer.
"""
