"""Models of the measured property: the deep-ensemble surrogate and the acquisition's GP.

Both are BoTorch models (`Model.posterior(X)` is the one door to them). This layer sits
beside `generators` and `oracles` and imports only `agent.core`.
"""
