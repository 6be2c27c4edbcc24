"""Test doubles shipped with innloop, so site installs can check their scheduler set-up
(`oracles.testing.fake_vasp` runs in place of VASP) without a VASP licence."""
