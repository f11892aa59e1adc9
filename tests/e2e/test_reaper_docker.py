"""Leases and the reaper on the docker backend (issue 12, finding 8): a leased docker testnet's
containers, network and state go when its owner is SIGKILLed; with the reaper killed as well,
``testnet clean`` removes them and says why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from harness.backends.docker_engine import LABEL
from harness.images import ensure_images
from harness.lease import take_reaped
from harness.naming import unique_name
from harness.network import Testnet
from harness.state import StateDir, process_start_time

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REAP_WITHIN_S = 60.0

OWNER = """
import json, sys
from harness.network import Testnet
from harness.topology import Topology
net = Testnet.up(Topology(name=sys.argv[1], swarms=1, swarm_size=2), backend="docker",
                 timeout=120)
print(json.dumps({"reaper_pid": net.state.reaper_pid}), flush=True)
sys.stdin.read()  # hold the lease until killed
"""


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    try:
        c = docker.from_env()
        c.ping()
    except Exception as e:
        pytest.skip(f"Docker engine not reachable: {e}")
    ensure_images(c)
    try:
        yield c
    finally:
        c.close()


def resources(client: Any, name: str) -> list[str]:
    f = {"label": f"{LABEL}={name}"}
    return ([c.name for c in client.containers.list(all=True, filters=f, ignore_removed=True)]
            + [n.name for n in client.networks.list(filters=f)]
            + [v.name for v in client.volumes.list(filters=f)])


def wait_until(what: str, predicate: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what} not reached within {timeout}s")
        time.sleep(0.2)
    return time.monotonic() - t0


@pytest.fixture
def owner() -> Iterator[Callable[[str], tuple[subprocess.Popen[str], dict[str, int]]]]:
    started: list[tuple[subprocess.Popen[str], str]] = []

    def start(name: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
        proc = subprocess.Popen([sys.executable, "-c", OWNER, name], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=os.environ.copy())
        started.append((proc, name))
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"the owner failed: {proc.stderr.read() if proc.stderr else ''}"
        return proc, json.loads(line)

    yield start
    for proc, name in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if StateDir(name).exists():
            Testnet.attach(name).down()


def test_leased_docker_testnet_is_reaped_when_its_owner_is_sigkilled(client, owner):
    name = unique_name("dlease")
    proc, info = owner(name)
    assert len(resources(client, name)) >= 4  # network, seed, toxiproxy, nodes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    took = wait_until("containers, network and state removed",
                      lambda: not resources(client, name) and not StateDir(name).exists(),
                      REAP_WITHIN_S)
    print(f"docker testnet reaped {took:.1f}s after the owner's SIGKILL")
    reaped = [r for r in take_reaped() if r["name"] == name]
    assert len(reaped) == 1 and reaped[0]["backend"] == "docker"
    wait_until("the reaper exits", lambda: process_start_time(info["reaper_pid"]) is None, 10)


def test_clean_removes_leased_docker_testnet_when_the_reaper_died_too(client, owner):
    name = unique_name("dleasecl")
    proc, info = owner(name)
    os.kill(info["reaper_pid"], signal.SIGKILL)
    wait_until("the reaper is gone", lambda: process_start_time(info["reaper_pid"]) is None, 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert resources(client, name) and StateDir(name).exists()  # nobody reaped it
    cleaned = subprocess.run([sys.executable, "-m", "harness", "clean"], capture_output=True,
                             text=True, timeout=180, env=os.environ.copy())
    assert cleaned.returncode == 0, cleaned.stderr
    assert name in cleaned.stdout
    assert f"removing stale docker testnet {name!r} (the owner of its lease (pid {proc.pid}) " \
           "died)" in cleaned.stderr
    assert not resources(client, name) and not StateDir(name).exists()
