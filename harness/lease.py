"""Leases: a leased testnet is removed when the process that owns its lease dies.

A testnet started with ``Testnet.up(lease=True)`` (the default of the Python API and of the
pytest plugin; ``testnet up`` on the command line takes no lease) records its owner in the state
(``lease_owner_pid`` and that process's start time, so that a reused pid is not taken for the
owner), and ``up`` starts ``python -m harness.reaper NAME --owner-pid P --owner-start T`` in a
session of its own (``setsid``: a signal to the owner's process group does not reach it). The
reaper waits for the owner to exit (a pidfd, so the kernel wakes it; every second it also looks
whether the testnet is still there) and then does what ``testnet down`` does, under the same
lock. It leaves by itself when the testnet is gone (``down``) or its lease changed, and the
owner's ``down`` stops it at once. Each testnet it removes is appended to
``$SESSION_TESTNET_HOME/reaped.jsonl``; ``testnet clean`` reports those and empties the file.

If the reaper itself is killed too (an OOM killer, a whole process tree killed), the lease still
makes the testnet stale: ``testnet clean`` (and the stale sweep every ``up`` runs) removes
testnets whose lease owner is gone, on both backends.

Why not Ryuk (testcontainers' reaper)? Decision: the harness-side reaper runs for every backend.
Ryuk removes docker resources by label when its client's connection closes; it knows nothing
of the process backend, nor of a testnet's state folder (a testnet Ryuk removed would still be
listed "up"), and it needs its image (``testcontainers/ryuk``), which cannot be pulled where
there is no registry, as here. The docker backend labels all its resources, so Ryuk could be
added later as a second line for docker; the harness reaper would stay, because it is the one
that also clears the state.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.state import (
    NetworkState,
    StateDir,
    StateError,
    locked,
    owner_alive,
    state_home,
)

#: where the reaper appends one JSON line per testnet it removed (read by ``testnet clean``)
REAPED_FILE = "reaped.jsonl"
#: the reaper's own log, in the state home (a testnet's folder goes when it is reaped)
REAPER_LOG = "reaper.log"
#: how often the reaper looks whether its testnet is still there (owner death wakes it at once)
CHECK_INTERVAL_S = 1.0
#: the process backend's mark of a testnet's processes: the reaper must not carry it (``down``
#: kills every process carrying it)
_PROCESS_MARK = "SESSION_TESTNET_DIR"


def start_reaper(statedir: StateDir, state: NetworkState) -> subprocess.Popen[bytes]:
    """Start the reaper of the leased testnet ``state`` (detached: its own session)."""
    if state.lease_owner_pid is None:
        raise ValueError(f"testnet {state.name!r} holds no lease: it needs no reaper")
    env = dict(os.environ)
    env.pop(_PROCESS_MARK, None)
    env["SESSION_TESTNET_HOME"] = str(statedir.home)
    root = str(Path(__file__).resolve().parents[1])  # import this harness, wherever it lives
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "harness.reaper", state.name,
            "--owner-pid", str(state.lease_owner_pid)]
    if state.lease_owner_start is not None:
        argv += ["--owner-start", str(state.lease_owner_start)]
    statedir.home.mkdir(parents=True, exist_ok=True)
    with open(statedir.home / REAPER_LOG, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, env=env, cwd="/", start_new_session=True,
                                close_fds=True)


def stop_reaper(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """Stop a reaper this process started (after ``down``: nothing is left for it to do)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _holds_lease(state: NetworkState, owner_pid: int, owner_start: int | None) -> bool:
    return state.lease_owner_pid == owner_pid and state.lease_owner_start == owner_start


def reap(name: str, owner_pid: int, owner_start: int | None, home: Path,
         reason: str = "") -> bool:
    """Remove testnet ``name`` if it still holds this lease and its owner is gone; return
    whether it was removed. Runs under the lock ``up``/``down`` use."""
    from harness.backends.registry import backend_class

    statedir = StateDir(name, home)
    with locked(home=home):
        try:
            state = statedir.load()
        except StateError:
            return False
        if not _holds_lease(state, owner_pid, owner_start) or owner_alive(owner_pid, owner_start):
            return False
        backend_class(state.backend)(statedir).destroy(state)
        statedir.remove()
        record = {"name": name, "backend": state.backend, "owner_pid": owner_pid,
                  "reaped_at": time.time(), "reason": reason or f"lease owner pid {owner_pid} died"}
        with open(home / REAPED_FILE, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    return True


def take_reaped(home: Path | None = None) -> list[dict[str, Any]]:
    """The testnets the reaper removed since the last call (oldest first); empties the record."""
    home = home or state_home()
    path = home / REAPED_FILE
    with locked(home=home):
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        path.unlink()
    out = []
    for line in lines:
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    """A pidfd of ``pid`` (readable once it exits), or None where the kernel has none."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no such process (checked next), or no pidfd support
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def watch(name: str, owner_pid: int, owner_start: int | None, home: Path,
          interval: float = CHECK_INTERVAL_S) -> str:
    """Wait until the owner dies (then reap the testnet) or the testnet is gone or re-leased;
    return what happened: "reaped", "gone" or "released"."""
    statedir = StateDir(name, home)
    with _pidfd(owner_pid) as fd:
        while True:
            try:
                state = statedir.load()
            except StateError:
                return "gone"
            if not _holds_lease(state, owner_pid, owner_start):
                return "released"
            if not owner_alive(owner_pid, owner_start):
                return "reaped" if reap(name, owner_pid, owner_start, home) else "gone"
            if fd is not None:
                select.select([fd], [], [], interval)
            else:
                time.sleep(interval)
