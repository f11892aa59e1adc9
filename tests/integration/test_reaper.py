"""Leases and the reaper (issue 12, finding 8): a leased testnet goes when its owner dies, even
by SIGKILL; a CLI-started one stays; ``testnet clean`` removes a leased testnet of a dead owner
when the reaper was killed too, and says so. Process backend; the docker variant is in
tests/e2e/test_reaper_docker.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from harness.backends.process import _all_marked
from harness.lease import take_reaped
from harness.naming import unique_name
from harness.network import Testnet
from harness.state import StateDir, process_start_time

pytestmark = pytest.mark.integration

#: how long the reaper may take to remove a testnet once its owner died
REAP_WITHIN_S = 20.0

#: a lease owner: starts a leased testnet, prints its state, then waits to be killed
OWNER = """
import json, sys
from harness.network import Testnet
from harness.topology import Topology
net = Testnet.up(Topology(name=sys.argv[1], swarms=1, swarm_size=2, proxies=False),
                 backend="process", timeout=60)
print(json.dumps({"reaper_pid": net.state.reaper_pid, "seed_pid": net.state.seed_runtime["pid"],
                  "lease_owner_pid": net.state.lease_owner_pid}), flush=True)
sys.stdin.read()  # hold the lease until killed
"""


def marked_pids(name: str) -> list[int]:
    folder = str(StateDir(name).path)
    return [pid for pid, mark in _all_marked().items() if mark == folder]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


def wait_until(what: str, predicate: Callable[[], bool], timeout: float) -> float:
    """Poll ``predicate`` until true; return the seconds it took (fail after ``timeout``)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what} not reached within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.fixture
def owner() -> Iterator[Callable[[str], tuple[subprocess.Popen[str], dict[str, int]]]]:
    """Start lease owners (child processes); whatever is left is removed at the end."""
    started: list[tuple[subprocess.Popen[str], str]] = []

    def start(name: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
        proc = subprocess.Popen([sys.executable, "-c", OWNER, name], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=os.environ.copy())
        started.append((proc, name))
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the owner prints once its testnet is up
        assert line, f"the owner failed to start its testnet: {proc.stderr.read() if proc.stderr else ''}"
        return proc, json.loads(line)

    yield start
    for proc, name in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if StateDir(name).exists():
            Testnet.attach(name).down()


def test_leased_testnet_is_reaped_when_its_owner_is_sigkilled(owner):
    name = unique_name("lease")
    proc, info = owner(name)
    assert info["lease_owner_pid"] == proc.pid
    assert process_start_time(info["reaper_pid"]) is not None, "no reaper runs"
    pids = marked_pids(name)
    assert info["seed_pid"] in pids and len(pids) == 5  # seed + launcher + 2 nodes + the file server

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    took = wait_until("testnet processes and state removed",
                      lambda: not marked_pids(name) and not StateDir(name).exists(), REAP_WITHIN_S)
    print(f"reaped {took:.2f}s after the owner's SIGKILL")
    wait_until("the reaper exits", lambda: process_start_time(info["reaper_pid"]) is None, 10)
    reaped = [r for r in take_reaped() if r["name"] == name]
    assert len(reaped) == 1 and reaped[0]["owner_pid"] == proc.pid
    assert reaped[0]["backend"] == "process"


def test_reaper_leaves_when_the_owner_brings_its_testnet_down():
    from harness.topology import Topology

    name = unique_name("leasedn")
    net = Testnet.up(Topology(name=name, swarms=1, swarm_size=2, proxies=False),
                     backend="process", timeout=60)
    reaper = net.state.reaper_pid
    assert reaper is not None and process_start_time(reaper) is not None
    net.down()
    assert process_start_time(reaper) is None  # down stopped it
    assert not [r for r in take_reaped() if r["name"] == name]  # a down is not a reaping


def test_released_lease_lets_the_testnet_outlive_its_owner(owner):
    """What the pytest plugin does with --testnet-keep-on-failure: the kept testnet must
    survive the pytest run."""
    name = unique_name("leaserel")
    proc, info = owner(name)
    Testnet.attach(name).release_lease()  # the lease is in the state: any handle may release it
    wait_until("the reaper leaves", lambda: process_start_time(info["reaper_pid"]) is None, 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert StateDir(name).load().lease_owner_pid is None
    assert name not in json.loads(cli("clean", "--json").stdout)["removed"]
    assert StateDir(name).exists() and marked_pids(name)
    Testnet.attach(name).wait_ready(timeout=30)  # still running, still answering


def test_cli_started_testnet_survives_its_cli_process():
    name = unique_name("nolease")
    try:
        up = cli("up", "--backend", "process", "--name", name, "--swarms", "1",
                 "--swarm-size", "2", "--json")
        assert up.returncode == 0, up.stderr
        state = StateDir(name).load()
        assert state.lease_owner_pid is None and state.reaper_pid is None
        cleaned = cli("clean", "--json")
        assert cleaned.returncode == 0, cleaned.stderr
        assert name not in json.loads(cleaned.stdout)["removed"]
        # the CLI process is long gone; the testnet still runs and answers
        assert StateDir(name).load().status == "up"
        # seed, toxiproxy, 2 nodes, the file server, the launcher the nodes are forked from
        assert len(marked_pids(name)) == 2 + 2 + 1 + 1
        Testnet.attach(name).wait_ready(timeout=30)
    finally:
        down = cli("down", "--name", name)
        assert down.returncode == 0, down.stderr
    assert not marked_pids(name)


def test_clean_removes_leased_testnet_of_dead_owner_when_the_reaper_died_too(owner):
    name = unique_name("leasecl")
    proc, info = owner(name)
    os.kill(info["reaper_pid"], signal.SIGKILL)  # the reaper is not our child: poll its end
    wait_until("the reaper is gone", lambda: process_start_time(info["reaper_pid"]) is None, 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert StateDir(name).exists() and marked_pids(name)  # nobody reaped it

    cleaned = cli("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed: {name}" in cleaned.stdout or name in cleaned.stdout.split("removed: ")[-1]
    assert f"removing stale process testnet {name!r} (the owner of its lease (pid {proc.pid}) " \
           "died)" in cleaned.stderr
    assert not marked_pids(name)
    assert not StateDir(name).exists()


def test_clean_keeps_a_testnet_whose_seed_is_stopped_and_sweeps_one_with_nothing_running():
    """A stopped seed (the stop_seed fault) is a testnet in use: a sweep by another harness must
    not remove it (its addresses would go to the next testnet, whose nodes then answer this
    one's clients). A testnet none of whose processes runs (all killed, a reboot) is stale."""
    from types import SimpleNamespace

    from harness.faults.families.churn import start_seed
    from harness.topology import Topology

    name = unique_name("seedstop")
    net = Testnet.up(Topology(name=name, swarms=1, swarm_size=2, proxies=False),
                     backend="process", timeout=60)
    try:
        seed = SimpleNamespace(name="seed", runtime=net.state.seed_runtime)
        net.backend.stop_node(net.state, seed)  # what the stop_seed fault does
        assert not net.backend.is_running(net.state, "seed")
        cleaned = cli("clean", "--json")
        assert cleaned.returncode == 0, cleaned.stderr
        assert name not in json.loads(cleaned.stdout)["removed"]
        assert StateDir(name).exists() and marked_pids(name)
        start_seed(net)
        net.wait_ready(timeout=60)
        net.release_lease()  # from here on, only its processes decide
        for pid in marked_pids(name):
            os.kill(pid, signal.SIGKILL)
        wait_until("every process is gone", lambda: not marked_pids(name), 30)
        cleaned = cli("clean", "--json")
        assert cleaned.returncode == 0, cleaned.stderr
        assert name in json.loads(cleaned.stdout)["removed"]
        assert f"removing stale process testnet {name!r} (none of its processes runs)" in cleaned.stderr
        assert not StateDir(name).exists()
    finally:
        if StateDir(name).exists():
            net.down()
