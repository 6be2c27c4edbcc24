"""Test doubles shipped with innloop, so site installs can check their scheduler set-up
(`oracles.testing.fake_vasp` runs in place of VASP) without a VASP licence, and loops can
be checked against every oracle fault (`oracles.testing.faulty.FaultyOracle` wraps any
oracle and injects them on a script)."""
