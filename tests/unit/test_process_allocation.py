"""Process testnets of different state homes never get the same 127.X block, even when both
allocate before either listens (parallel test workers, a second SESSION_TESTNET_HOME)."""

from __future__ import annotations

import pytest

from harness.backends.process import ProcessBackend
from harness.state import StateDir

pytestmark = pytest.mark.unit


def test_two_homes_allocating_at_once_get_different_blocks(tmp_path):
    a = StateDir("same-name", tmp_path / "home-a")
    b = StateDir("same-name", tmp_path / "home-b")
    a.create()
    b.create()
    try:
        xa = ProcessBackend(a)._allocate_index()
        xb = ProcessBackend(b)._allocate_index()  # a's testnet is not listening yet
        assert xa != xb
        a.remove()  # a's testnet is gone: its block is free again
        assert ProcessBackend(StateDir("other", tmp_path / "home-c"))._allocate_index() == xa
    finally:  # the reservations end with the state folders
        a.remove()
        b.remove()
