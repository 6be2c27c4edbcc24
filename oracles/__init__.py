"""Oracles: whatever measures a design (DFT on a cluster, local DFT, a robot, a mock).

One protocol (submit -> poll -> results, JSON-serialisable handles) with back ends
registered by name; the loop talks to the protocol only.
"""
