"""The agent: design spaces and materials, observations, the surrogate ensemble,
localization and down-selection, and the design pass that composes them."""
