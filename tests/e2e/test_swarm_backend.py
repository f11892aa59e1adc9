"""The swarm backend end to end on a single-node swarm, through the CLI: `up --backend swarm
--json` is ready with a node->host map, a message goes through, a fault has its effect, a killed
node comes back as a new task, and `down` leaves no service, container, network or volume.

The engine is put in swarm mode only for this module when it is not in it already, and left
as it was found afterwards (also when a test fails): `docker swarm leave --force`, and the
`docker_gwbridge` network swarm mode created."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import urllib3
from swarm_support import (
    answers,
    cli,
    engine_or_skip,
    eventually,
    exclusive_swarm_mode,
    leftovers,
    running_tasks,
)

from harness.backends.docker_engine import LABEL
from harness.images import ensure_images
from harness.naming import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

urllib3.disable_warnings()  # the nodes' certificates are self-signed


@pytest.fixture(scope="module")
def swarm_client() -> Iterator[Any]:
    client = engine_or_skip()
    with exclusive_swarm_mode():
        yield from _swarm_mode(client)


def _swarm_mode(client: Any) -> Iterator[Any]:
    swarm = client.info().get("Swarm") or {}
    had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
    initialised = False
    if swarm.get("LocalNodeState") != "active":
        try:  # loopback only: the single-node swarm talks to nobody
            client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
            initialised = True
        except docker.errors.APIError as e:
            client.close()
            pytest.skip(f"cannot put the engine in swarm mode: {e.explanation or e}")
    elif not swarm.get("ControlAvailable"):
        client.close()
        pytest.skip("the engine is a swarm worker; the swarm backend needs a manager")
    try:
        ensure_images(client)
        yield client
    finally:
        if initialised:
            client.swarm.leave(force=True)
            if not had_gwbridge:
                for net in client.networks.list(names=["docker_gwbridge"]):
                    net.reload()
                    if not (net.attrs.get("Containers") or {}):
                        net.remove()
        client.close()


def test_swarm_testnet_up_send_fault_kill_down(swarm_client: Any, tmp_path: Path) -> None:
    name = unique_name("swarm")
    home = tmp_path / "home"
    try:
        up = json.loads(cli(home, "up", "-n", name, "--backend", "swarm", "--swarms", "2",
                            "--swarm-size", "2", "--json").stdout)
        assert up["backend"] == "swarm" and up["status"] == "up"
        nodes = {n["name"]: n for n in up["nodes"]}
        assert len(nodes) == 4
        # every node is a swarm service whose task runs on this (single) host
        host = swarm_client.info()["Name"]
        for n in nodes.values():
            assert n["host"] == host, n
            svc = swarm_client.services.get(f"st-{name}-{n['name']}")
            assert svc.attrs["Spec"]["Labels"][LABEL] == name
        status = json.loads(cli(home, "status", "-n", name, "--json").stdout)
        status = status[0] if isinstance(status, list) else status
        assert {n["name"]: n["host"] for n in status["nodes"]} == {k: host for k in nodes}

        # a message from one account to another, through onion paths over the overlay
        a, b = tmp_path / "a.json", tmp_path / "b.json"
        cli(home, "account", "new", "-o", str(a))
        cli(home, "account", "new", "-o", str(b))
        to = json.loads(b.read_text())["session_id"]
        cli(home, "send", "-n", name, "--account", str(a), "--to", to, "swarm says hello")
        assert "swarm says hello" in cli(home, "recv", "-n", name, "--account", str(b)).stdout

        # a Toxiproxy fault: the node's advertised address stops answering, then again
        target = nodes["sn01"]
        assert answers(target["public_ip"], target["storage_port"])
        cli(home, "fault", "down", "sn01", "-n", name)
        assert not answers(target["public_ip"], target["storage_port"])
        cli(home, "fault", "up", "sn01", "-n", name)
        assert answers(target["public_ip"], target["storage_port"])

        # a killed node stays down (restart policy none); started, it is a new task (a new
        # address) behind the same advertised one: its proxy follows it
        svc_name = f"st-{name}-sn02"
        first = running_tasks(swarm_client, svc_name)
        assert len(first) == 1
        cli(home, "fault", "kill", "sn02", "-n", name)
        assert running_tasks(swarm_client, svc_name) == []
        assert not answers(nodes["sn02"]["public_ip"], nodes["sn02"]["storage_port"])
        cli(home, "fault", "start", "sn02", "-n", name)
        second = running_tasks(swarm_client, svc_name)
        assert len(second) == 1 and second != first
        # the task runs; the node process answers once it has bound its port
        assert eventually(lambda: answers(nodes["sn02"]["public_ip"], nodes["sn02"]["storage_port"]))
    finally:
        cli(home, "down", "-n", name, check=False)
    assert leftovers(swarm_client, name, home) == {"services": [], "containers": [],
                                                   "networks": [], "volumes": []}
