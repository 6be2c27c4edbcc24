"""Thin orchestration layers: the Prefect campaign flow and the Ray sampler actors.

No science lives here; every stage calls a plain function from `agent`.
"""
