"""Leases (issue 12, finding 8): who counts as the owner, when a leased testnet is stale, what
the reaper does and what it leaves alone. Child processes only; no testnet is started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.lease import reap, take_reaped, watch
from harness.state import (
    NetworkState,
    StateDir,
    is_stale,
    owner_alive,
    process_start_time,
    stale_reason,
)


def state(name: str = "t", **kw: object) -> NetworkState:
    return NetworkState(name=name, backend="process", topology={}, seed_url="http://127.0.0.1:1",
                        admin_token="x", net_index=1, status="up", **kw)  # type: ignore[arg-type]


@pytest.fixture
def dead_pid() -> tuple[int, int | None]:
    """The pid and start time of a process that has exited (and been waited for)."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    start = process_start_time(proc.pid)
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait()
    return proc.pid, start


def test_start_time_identifies_a_process() -> None:
    me = process_start_time(os.getpid())
    assert me is not None and me == process_start_time(os.getpid())
    assert owner_alive(os.getpid(), me)
    assert not owner_alive(os.getpid(), me + 1)  # same pid, another start: a reused pid


def test_exited_and_zombie_owners_are_dead(dead_pid: tuple[int, int | None]) -> None:
    pid, start = dead_pid
    assert process_start_time(pid) is None and not owner_alive(pid, start)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # wait for its exit without reaping it: it is a zombie until wait()
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)
        assert process_start_time(zombie.pid) is None
    finally:
        zombie.wait()


def test_stale_reasons(dead_pid: tuple[int, int | None]) -> None:
    pid, start = dead_pid
    me = os.getpid()
    assert stale_reason(state()) is None  # CLI-started: no lease, up: stays until down
    assert stale_reason(state(lease_owner_pid=me, lease_owner_start=process_start_time(me))) is None
    expired = state(lease_owner_pid=pid, lease_owner_start=start)
    assert stale_reason(expired) == f"the owner of its lease (pid {pid}) died" and is_stale(expired)
    starting = state(owner_pid=pid)
    starting.status = "starting"
    assert "died before it was up" in (stale_reason(starting) or "")


def test_reap_removes_only_an_expired_lease_and_records_it(
        tmp_path: Path, dead_pid: tuple[int, int | None]) -> None:
    pid, start = dead_pid
    me, my_start = os.getpid(), process_start_time(os.getpid())
    for name, owner in (("alive", (me, my_start)), ("dead", (pid, start))):
        sd = StateDir(name, tmp_path)
        sd.create()
        sd.save(state(name, lease_owner_pid=owner[0], lease_owner_start=owner[1]))
    assert not reap("alive", me, my_start, tmp_path)  # its owner runs: kept
    assert not reap("dead", pid, (start or 0) + 1, tmp_path)  # another lease: not this reaper's
    assert StateDir("dead", tmp_path).exists()
    assert reap("dead", pid, start, tmp_path)
    assert not StateDir("dead", tmp_path).exists() and StateDir("alive", tmp_path).exists()
    records = take_reaped(tmp_path)
    assert [(r["name"], r["owner_pid"], r["backend"]) for r in records] == [("dead", pid, "process")]
    assert take_reaped(tmp_path) == []  # reported once


def test_watch_ends_when_the_testnet_is_gone_or_released(tmp_path: Path) -> None:
    me, my_start = os.getpid(), process_start_time(os.getpid())
    sd = StateDir("w", tmp_path)
    sd.create()
    assert watch("w", me, my_start, tmp_path) == "gone"  # no state file
    sd.save(state("w", lease_owner_pid=me, lease_owner_start=(my_start or 0) + 1))
    assert watch("w", me, my_start, tmp_path) == "released"  # leased to someone else
