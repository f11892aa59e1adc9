"""The swarm backend over several hosts, simulated on this machine: two Docker engines in
containers (``testnet swarm-sim up``) joined as workers to a swarm of the local engine.

A testnet placed on all three hosts is ready with its node->host map, delivers a message
whose onion path and swarm fan-out cross hosts, takes faults on nodes of other hosts (Toxiproxy,
kill and start through that host's engine, pause), reads their logs, and leaves nothing on any
host at ``down``; the delivery, churn and partition scenarios pass on a testnet spread over the
hosts. The simulated hosts and the swarm are removed afterwards, also when a test fails, and
the engine is back to no swarm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from orphan_watch import register_sim_home
from swarm_support import (
    answers,
    cli,
    engine_or_skip,
    eventually,
    exclusive_swarm_mode,
    leftovers,
    running_tasks,
)

from harness.backends.swarm_engines import ENV as ENGINES_ENV
from harness.images import ensure_images
from harness.naming import unique_name
from harness.swarmsim import SimError, SimHosts
from harness.swarmsim.hosts import LABEL as SIM_LABEL

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The local engine (the manager) and a client per simulated host, by host name."""
    client = engine_or_skip()
    # a short home: the hosts' engine sockets live under it (a socket path has <= 107 bytes)
    home = Path(tmp_path_factory.mktemp("sim", numbered=True))
    with exclusive_swarm_mode():
        if (client.info().get("Swarm") or {}).get("LocalNodeState") != "inactive":
            client.close()
            pytest.skip("the engine is in a swarm already; the simulated hosts need their own")
        ensure_images(client)
        hosts = SimHosts(home, client)
        register_sim_home(hosts.dir.parent)  # removed by the run's watcher after a kill -9
        try:
            try:
                engines = hosts.up(2)
            except SimError as e:
                pytest.skip(f"cannot simulate swarm hosts on this engine: {e}")
            workers = {h: docker.DockerClient(base_url=u, timeout=60) for h, u in engines.items()}
            os.environ[ENGINES_ENV] = hosts.engines_env()
            try:
                yield client, workers
            finally:
                os.environ.pop(ENGINES_ENV, None)
                for w in workers.values():
                    w.close()
        finally:
            hosts.down()
            assert (client.info().get("Swarm") or {}).get("LocalNodeState") == "inactive"
            assert client.containers.list(all=True, filters={"label": SIM_LABEL}) == []
            assert client.networks.list(names=["st-sim"]) == []
            client.close()


@pytest.mark.timeout(600)
def test_a_testnet_spread_over_three_hosts(sim: tuple[Any, dict[str, Any]],
                                            tmp_path: Path) -> None:
    manager, workers = sim
    name = unique_name("multi")
    home = tmp_path / "home"
    topo = tmp_path / "topology.json"
    # two nodes on each host (labels set by swarm-sim), the swarms mixed over hosts
    topo.write_text(json.dumps({"swarm_size": 3, "nodes": [
        {"count": 2, "placement": "sim-host=manager"},
        {"count": 2, "placement": "sim-host=host1"},
        {"count": 2, "placement": "sim-host=host2"}]}))
    manager_host = manager.info()["Name"]
    try:
        up = json.loads(cli(home, "up", "-n", name, "--backend", "swarm", "--topology",
                            str(topo), "--json").stdout)
        assert up["status"] == "up"
        hosts = {n["name"]: n["host"] for n in up["nodes"]}
        assert hosts == {"sn01": manager_host, "sn02": manager_host, "sn03": "host1",
                         "sn04": "host1", "sn05": "host2", "sn06": "host2"}
        status = json.loads(cli(home, "status", "-n", name, "--json").stdout)
        status = status[0] if isinstance(status, list) else status
        assert {n["name"]: n["host"] for n in status["nodes"]} == hosts
        # each task runs on the engine of its host, nowhere else
        for node, host in hosts.items():
            engine = manager if host == manager_host else workers[host]
            mine = {"label": [f"session-testnet={name}", f"session-testnet.target={node}"]}
            assert [c.status for c in engine.containers.list(filters=mine)] == ["running"]

        # messages both ways: every onion path and swarm fan-out crosses hosts
        a, b = tmp_path / "a.json", tmp_path / "b.json"
        cli(home, "account", "new", "-o", str(a))
        cli(home, "account", "new", "-o", str(b))
        to_b = json.loads(b.read_text())["session_id"]
        to_a = json.loads(a.read_text())["session_id"]
        for i in range(3):
            cli(home, "send", "-n", name, "--account", str(a), "--to", to_b, f"a->b {i}")
            cli(home, "send", "-n", name, "--account", str(b), "--to", to_a, f"b->a {i}")
        got_b = cli(home, "recv", "-n", name, "--account", str(b)).stdout
        got_a = cli(home, "recv", "-n", name, "--account", str(a)).stdout
        assert all(f"a->b {i}" in got_b and f"b->a {i}" in got_a for i in range(3))

        # a node of another host: Toxiproxy fault, log, pause, kill and start there
        n3 = {n["name"]: n for n in up["nodes"]}["sn03"]
        ip, port = n3["public_ip"], n3["storage_port"]
        assert answers(ip, port)
        cli(home, "fault", "down", "sn03", "-n", name)
        assert not answers(ip, port)
        cli(home, "fault", "up", "sn03", "-n", name)
        assert answers(ip, port)
        assert "started" in cli(home, "logs", "-n", name, "sn03", "--tail", "50").stdout
        on_host1 = {"label": [f"session-testnet={name}", "session-testnet.target=sn03"]}
        cli(home, "fault", "pause", "sn03", "-n", name)
        assert [c.status for c in workers["host1"].containers.list(filters=on_host1)] == ["paused"]
        cli(home, "fault", "unpause", "sn03", "-n", name)
        assert eventually(lambda: answers(ip, port))
        svc = f"st-{name}-sn03"
        first = running_tasks(manager, svc)
        cli(home, "fault", "kill", "sn03", "-n", name)
        assert running_tasks(manager, svc) == []
        assert workers["host1"].containers.list(filters=on_host1) == []  # none running there
        assert not answers(ip, port)
        cli(home, "fault", "start", "sn03", "-n", name)
        second = running_tasks(manager, svc)
        assert len(second) == 1 and second != first
        again = json.loads(cli(home, "status", "-n", name, "--json").stdout)
        again = again[0] if isinstance(again, list) else again
        assert {n["name"]: n["host"] for n in again["nodes"]}["sn03"] == "host1"  # its volume
        assert eventually(lambda: answers(ip, port))
        # the restarted node is routed again: it stores with its swarm peers on other hosts
        cli(home, "send", "-n", name, "--account", str(a), "--to", to_b, "after restart")
        assert "after restart" in cli(home, "recv", "-n", name, "--account", str(b)).stdout
    finally:
        cli(home, "down", "-n", name, check=False)
    assert leftovers(manager, name, home) == {"services": [], "containers": [], "networks": [],
                                              "volumes": []}
    for host, engine in workers.items():
        f = {"label": [f"session-testnet={name}"]}
        assert engine.containers.list(all=True, filters=f) == [], host
        assert engine.volumes.list(filters=f) == [], host


@pytest.mark.timeout(1200)
def test_delivery_churn_and_partition_scenarios_across_hosts(
        sim: tuple[Any, dict[str, Any]], tmp_path: Path) -> None:
    """One scenario of each family, on testnets the swarm spreads over the three hosts (each
    simulated host's engine started node containers of them)."""
    _, workers = sim
    env = {**os.environ, "SESSION_TESTNET_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    since = int(time.time()) - 1  # the simulated hosts share this machine's clock
    res = subprocess.run(
        [sys.executable, "-m", "harness", "suite", "run", "-b", "swarm", "--artifacts",
         str(tmp_path / "artifacts"), "test_delivery_both_ways",
         "test_churn_kill_swarm_member_mid_stream", "test_swarm_cut_in_two_and_healed"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert "3 passed" in res.stdout, res.stdout[-3000:]
    for host, engine in workers.items():
        started = engine.events(since=since, until=int(time.time()), decode=True,
                                filters={"type": "container", "event": "start",
                                         "label": "session-testnet.role=node"})
        assert sum(1 for _ in started) >= 1, f"no node ran on {host}"
