"""Removing a testnet's docker resources when the engine holds a network through an endpoint of
a container that is gone (seen with Docker 20.10: "has active endpoints" with no container
attached, until the engine restarts): a clear, specific error that the sweep turns into a
warning, never a failed `testnet clean`; a network with a container attached stays an error."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from harness.backends.base import BackendError
from harness.backends.docker_engine import KIND, LABEL_HOST, LABEL_STATE
from harness.backends.docker_gc import EngineLeftover, _stale_reason, remove_resources
from harness.state import NetworkState, StateDir

pytestmark = pytest.mark.unit


class FakeNetwork:
    def __init__(self, name: str, containers: dict[str, Any]) -> None:
        self.name = name
        self.attrs: dict[str, Any] = {"Containers": containers}

    def reload(self) -> None:
        pass

    def remove(self) -> None:
        raise docker.errors.APIError(
            "403", explanation=f"error while removing network: network {self.name} id 08ec "
                               "has active endpoints")


class FakeClient:
    def __init__(self, net: FakeNetwork) -> None:
        self.containers = type("C", (), {"list": staticmethod(lambda **kw: [])})()
        self.networks = type("N", (), {"list": staticmethod(lambda **kw: [net])})()
        self.volumes = type("V", (), {"list": staticmethod(lambda **kw: [])})()


def test_a_network_held_by_a_vanished_endpoint_is_an_engine_leftover() -> None:
    with pytest.raises(EngineLeftover) as e:
        remove_resources(FakeClient(FakeNetwork("st-t1", {})), {"label": ["x"]}, rounds=2)  # type: ignore[arg-type]
    assert e.value.networks == ["st-t1"]
    assert "restart" in str(e.value) and "st-t1" in str(e.value)


def test_a_network_with_a_container_attached_is_a_plain_error() -> None:
    net = FakeNetwork("st-t2", {"abc": {"Name": "st-t2-sn01"}})
    with pytest.raises(BackendError) as e:
        remove_resources(FakeClient(net), {"label": ["x"]}, rounds=2)  # type: ignore[arg-type]
    assert not isinstance(e.value, EngineLeftover)
    assert "could not remove network st-t2" in str(e.value)


class SeedContainers:
    """``client.containers.get`` of a docker client whose only container is a stopped seed
    (``present``) or none at all."""

    def __init__(self, present: bool) -> None:
        self.present = present

    def get(self, name: str) -> Any:
        if not self.present or not name.endswith("-seed"):
            raise docker.errors.NotFound(f"no container {name}")
        return type("Seed", (), {"attrs": {"State": {"Running": False, "Status": "exited"}}})()


def test_a_stopped_seed_is_a_testnet_in_use_a_missing_one_is_stale(tmp_path: Path) -> None:
    """The stop_seed fault stops the seed container: another worker's `up` sweeping then must
    not remove the testnet (its network vanished mid-scenario and its subnet went to the next
    testnet, CI 2026-12-07); a testnet whose seed container is gone is still swept."""
    sd = StateDir("inuse", tmp_path)
    sd.create()
    sd.save(NetworkState(name="inuse", backend=KIND, topology={}, seed_url="http://10.129.0.2:22023",
                         admin_token="x", net_index=129, status="up"))
    labels = {LABEL_HOST: socket.gethostname(), LABEL_STATE: str(sd.path)}
    client: Any = type("Client", (), {})()
    client.containers = SeedContainers(present=True)
    assert _stale_reason(client, labels, tmp_path) is None
    client.containers = SeedContainers(present=False)
    assert _stale_reason(client, labels, tmp_path) == "its seed container is gone"
