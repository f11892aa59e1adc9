"""The test run's orphan watcher (tests/orphan_watch.py, started by tests/conftest.py): once the
run's process is gone, even by SIGKILL, the processes it marked are killed, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from orphan_watch import ENV_RUN, marked

WATCH = Path(__file__).resolve().parents[1] / "orphan_watch.py"

pytestmark = pytest.mark.unit


def _gone(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def test_this_run_is_marked_and_watched() -> None:
    mark = os.environ.get(ENV_RUN)
    assert mark, "tests/conftest.py did not mark the run"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert child.pid in marked(mark), "a process the tests start does not carry the mark"
    finally:
        child.kill()
        child.wait()
    watchers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and _cmdline(p)[-3:-2] == [str(WATCH)] and _cmdline(p)[-1:] == [mark]]
    assert watchers, f"no orphan watcher runs for this test run ({mark})"


def _cmdline(proc: Path) -> list[str]:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def test_marked_processes_die_with_their_owner_and_others_live() -> None:
    mark = f"test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, ENV_RUN: mark}
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             env={**os.environ, ENV_RUN: mark + "-other"})
    watcher = subprocess.Popen([sys.executable, str(WATCH), str(owner.pid), mark],
                               env={k: v for k, v in os.environ.items() if k != ENV_RUN},
                               start_new_session=True)
    try:
        assert set(marked(mark)) == {owner.pid, child.pid}
        assert not _gone(child, 0.5), "the watcher killed a marked process while its owner lived"
        owner.kill()  # the run's process killed with SIGKILL
        owner.wait()
        assert _gone(child, 30), "a marked process outlived its run"
        assert _gone(watcher, 30) and watcher.returncode == 0
        assert other.poll() is None, "a process of another run was killed"
    finally:
        for p in (owner, child, other, watcher):
            p.kill()
            p.wait()
