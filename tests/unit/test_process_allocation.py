"""Process testnets of different state homes never get the same 127.X block, even when both
allocate before either listens (parallel test workers, a second SESSION_TESTNET_HOME)."""

from __future__ import annotations

import pytest

from harness.backends import process
from harness.backends.process import ProcessBackend
from harness.state import StateDir

pytestmark = pytest.mark.unit


@pytest.fixture
def quiet_machine(tmp_path, monkeypatch):
    """Every address bindable and a reservation folder of this test's own (no other testnets)."""
    monkeypatch.setattr(process, "_bindable", lambda ip, port: True)
    monkeypatch.setattr(process.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()


def test_two_homes_allocating_at_once_get_different_blocks(tmp_path, quiet_machine):
    a = StateDir("same-name", tmp_path / "home-a")
    b = StateDir("same-name", tmp_path / "home-b")
    a.create()
    b.create()
    assert ProcessBackend(a)._allocate_index(6) == 1
    assert ProcessBackend(b)._allocate_index(6) == 2  # a's testnet is not listening yet
    a.remove()  # a's testnet is gone: its block is free again
    c = StateDir("other", tmp_path / "home-c")
    c.create()
    assert ProcessBackend(c)._allocate_index(6) == 1
    assert ProcessBackend(StateDir("x", tmp_path / "home-d"))._allocate_index(6) == 3
