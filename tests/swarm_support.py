"""What the swarm e2e tests share: a lock on the engine's swarm mode and CLI/engine helpers.

One e2e test at a time may change the engine's swarm mode (the single-host swarm test
initialises it on loopback, the multi-host one creates a swarm for simulated hosts): under
pytest-xdist both would otherwise flip the same engine-wide state under each other."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from harness.backends.docker_engine import LABEL, LABEL_SWARM_STATE

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def exclusive_swarm_mode() -> Iterator[None]:
    with open(Path(tempfile.gettempdir()) / "session-testnet-swarm-mode.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SESSION_TESTNET_HOME": str(home), "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "harness", *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    if check and res.returncode != 0:
        raise AssertionError(f"testnet {' '.join(args)} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def leftovers(client: Any, name: str, home: Path) -> dict[str, list[str]]:
    f = {"label": [f"{LABEL}={name}", f"{LABEL_SWARM_STATE}={home / 'networks' / name}"]}
    return {
        "services": [s.name for s in client.services.list(filters=f)],
        "containers": [c.name for c in client.containers.list(all=True, filters=f,
                                                               ignore_removed=True)],
        "networks": [n.name for n in client.networks.list(filters=f)],
        "volumes": [v.name for v in client.volumes.list(filters=f)],
    }


def running_tasks(client: Any, service: str) -> list[str]:
    return [t["ID"] for t in client.services.get(service).tasks()
            if t["Status"]["State"] == "running"]


def answers(ip: str, port: int) -> bool:
    """The node behind ``ip:port`` answers its storage RPC ``info``."""
    try:
        r = requests.post(f"https://{ip}:{port}/storage_rpc/v1",
                          json={"method": "info", "params": {}}, verify=False, timeout=5)
    except requests.exceptions.RequestException:
        return False
    return r.status_code == 200


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def engine_or_skip() -> Any:
    """A client of the local Docker engine; the test is skipped when there is none."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:
        pytest.skip(f"Docker engine not reachable: {e}")
    return client
