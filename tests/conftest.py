"""Test-suite settings: testnets started by tests live in their own state home, so they never
touch a user's own testnets, and leftovers of a crashed run are swept by the next one.

Every process a test run starts is marked (``SESSION_TESTNET_TEST_RUN`` in its environment)
and a watcher (``tests/orphan_watch.py``) kills the marked processes that outlive the run's
own process, so a run killed with SIGKILL leaves no node, launcher or Toxiproxy server behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from orphan_watch import ENV_RUN, sim_homes_file  # tests/ is on sys.path: its conftest lives there

os.environ.setdefault("SESSION_TESTNET_HOME",
                      str(Path(tempfile.gettempdir()) / f"session-testnet-tests-{os.getuid()}"))

_WATCHER = pytest.StashKey[subprocess.Popen[bytes]]()


def pytest_configure(config: pytest.Config) -> None:
    # one watcher per run: xdist workers and pytest runs started by tests inherit the mark
    if ENV_RUN in os.environ:
        return
    mark = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    os.environ[ENV_RUN] = mark
    watcher = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("orphan_watch.py")), str(os.getpid()), mark],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env={k: v for k, v in os.environ.items() if k != ENV_RUN})
    config.stash[_WATCHER] = watcher


def pytest_unconfigure(config: pytest.Config) -> None:
    watcher = config.stash.get(_WATCHER, None)
    if watcher is not None:
        watcher.terminate()
        watcher.wait(timeout=10)
        sim_homes_file(os.environ[ENV_RUN]).unlink(missing_ok=True)
