"""The swarm backend's pure parts: a node group's host placement (topology field, validation,
the swarm constraint it becomes), the host's way into a testnet's overlay, task addresses, and
the addresses a swarm testnet plans (nodes behind proxies at fixed addresses, their own address
the swarm's choice)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.backends.docker_engine import LABEL_BACKEND
from harness.backends.swarm import SwarmBackend
from harness.backends.swarm_net import (
    bridge_name,
    host_address,
    host_route_script,
    pin_constraint,
    placement_constraints,
    proxyhost_route,
    task_address,
)
from harness.state import NetworkState, NodeRecord, StateDir
from harness.topology import NodeGroup, Topology, TopologyError

pytestmark = pytest.mark.unit


def test_placement_in_a_topology_file_becomes_a_label_constraint() -> None:
    t = Topology.from_dict({"nodes": [{"count": 3, "placement": "region=eu"},
                                      {"count": 3, "placement": "region=us-east.1"},
                                      {"count": 2}]})
    assert placement_constraints(t.node_group("sn01")) == ["node.labels.region==eu"]
    assert placement_constraints(t.node_group("sn04")) == ["node.labels.region==us-east.1"]
    assert placement_constraints(t.node_group("sn07")) == []
    assert placement_constraints(None) == []
    # survives the state round trip (the backend reads it back from the state's topology)
    again = Topology.from_dict(t.to_dict())
    assert again.node_group("sn02").placement == "region=eu"


@pytest.mark.parametrize("bad", ["region", "=eu", "region=", "region==eu", "re gion=eu",
                                 "region=e u", "node.id=x;y", 7])
def test_placement_must_be_key_equals_value(bad: object) -> None:
    with pytest.raises(TopologyError, match="placement must be KEY=VALUE"):
        NodeGroup(count=1, placement=bad)  # type: ignore[arg-type]


def test_pin_constraint_names_the_swarm_node() -> None:
    assert pin_constraint("wrgat3deilml5yqmk239fy6q9") == "node.id==wrgat3deilml5yqmk239fy6q9"


def test_host_route_uses_an_address_outside_every_other_role() -> None:
    x = 131
    assert host_address(x) == "10.131.255.253"  # not a node (10.X.i.*, i<=254), not a task
    assert bridge_name(x) == "st131gw" and len(bridge_name(254)) <= 15  # a Linux device name
    assert host_route_script(x, "st131gw", "172.19.0.2") == [
        "ip addr replace 10.131.255.253/32 dev st131gw",
        "ip route replace 10.131.0.0/16 via 172.19.0.2 dev st131gw src 10.131.255.253"]
    assert proxyhost_route(x, "172.19.0.1") == ["ip", "route", "replace", "10.131.255.253/32",
                                                "via", "172.19.0.1"]


def test_task_address_of_the_testnet_overlay_only() -> None:
    task = {"NetworksAttachments": [
        {"Network": {"ID": "ingress"}, "Addresses": ["10.0.0.5/24"]},
        {"Network": {"ID": "ov"}, "Addresses": ["10.131.255.7/16"]}]}
    assert task_address(task, "ov") == "10.131.255.7"
    assert task_address(task, "other") is None
    assert task_address({}, "ov") is None


def _state(x: int = 140) -> NetworkState:
    t = Topology(name="sw", swarms=1, swarm_size=2)
    nodes = [NodeRecord(name=n, public_ip="", storage_port=22021, admin_port=22030,
                        pubkey_ed25519="", pubkey_x25519="") for n in t.node_names()]
    return NetworkState(name="sw", backend="swarm", topology=t.to_dict(), seed_url="",
                        admin_token="", net_index=x, nodes=nodes)


def test_swarm_addresses_fixed_proxies_and_seed_nodes_by_service_name(tmp_path: Path) -> None:
    st = _state()
    SwarmBackend.assign_addresses(st)
    assert st.seed_url == "http://10.140.0.2:22023"
    assert st.toxiproxy_url == "http://10.140.0.1:8474"
    sn2 = st.node("sn02")
    assert sn2.public_ip == "10.140.2.1" and sn2.proxy == "sn02"
    # until its task runs, a node is its service's DNS name (its proxy's upstream)
    assert sn2.bind_ip == "st-sw-sn02"
    backend = SwarmBackend(StateDir("sw", tmp_path))
    assert backend.listen_ip(st, "sn02") == "0.0.0.0"
    assert backend.listen_ip(st, "seed") == "10.140.0.2"
    labels = backend.labels(st, role="node", target="sn02")
    assert labels[LABEL_BACKEND] == "swarm"  # the docker backend's sweep leaves these alone
    # ...and so do older harness versions, which know only session-testnet.state
    from harness.backends.docker_engine import LABEL_STATE, LABEL_SWARM_STATE
    assert LABEL_STATE not in labels and labels[LABEL_SWARM_STATE] == str(backend.statedir.path)


class _Labelled:
    def __init__(self, labels: dict[str, str]) -> None:
        self.attrs = {"Labels": labels}
        self.name = "st-live-seed"


class _SweepClient:
    """An engine holding one resource with ``labels``; records what the sweep removes."""

    def __init__(self, labels: dict[str, str]) -> None:
        res = [_Labelled(labels)]
        self.containers = type("C", (), {"list": staticmethod(lambda **kw: res),
                                         "get": staticmethod(lambda name: res[0])})()
        self.networks = type("N", (), {"list": staticmethod(lambda **kw: [])})()
        self.volumes = type("V", (), {"list": staticmethod(lambda **kw: [])})()


def test_each_sweep_judges_only_its_own_backends_testnets(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A swarm testnet's resources carry the docker labels: the docker sweep must not take its
    state (backend "swarm") for a mismatch and remove it, and the swarm sweep must keep it while
    it is up, and remove it once its state is gone."""
    import socket

    from harness.backends.docker_engine import LABEL, LABEL_HOST, LABEL_OWNER, LABEL_SWARM_STATE
    from harness.backends.docker_gc import sweep

    monkeypatch.setenv("SESSION_TESTNET_HOME", str(tmp_path))
    sd = StateDir("live", tmp_path)
    sd.create()
    sd.save(NetworkState(name="live", backend="swarm", topology={}, seed_url="", admin_token="x",
                         net_index=150, status="up"))
    labels = {LABEL: "live", LABEL_SWARM_STATE: str(sd.path), LABEL_HOST: socket.gethostname(),
              LABEL_OWNER: "0", LABEL_BACKEND: "swarm"}
    removed: list[dict] = []
    client = _SweepClient(labels)
    assert sweep(client, lambda _: None, remove=lambda c, f: removed.append(f)) == []  # type: ignore[arg-type]
    assert sweep(client, lambda _: None, kind="swarm",  # type: ignore[arg-type]
                 remove=lambda c, f: removed.append(f), state_label=LABEL_SWARM_STATE) == []
    assert removed == []
    sd.remove()
    assert sweep(client, lambda _: None, remove=lambda c, f: removed.append(f)) == []  # type: ignore[arg-type]
    assert sweep(client, lambda _: None, kind="swarm",  # type: ignore[arg-type]
                 remove=lambda c, f: removed.append(f), state_label=LABEL_SWARM_STATE) == ["live"]
    assert removed == [{"label": [f"{LABEL}=live", f"{LABEL_SWARM_STATE}={sd.path}"]}]


class _Images:
    def __init__(self, tags: set[str]) -> None:
        self.tags = tags
        self.loaded: list[bytes] = []

    def get(self, tag: str) -> object:
        import docker.errors

        if tag not in self.tags:
            raise docker.errors.ImageNotFound(tag)
        return type("Image", (), {"save": staticmethod(lambda named: iter([b"tar:", tag.encode()]))})()

    def load(self, data: Any) -> None:
        self.loaded.append(data.read(4) + data.read())  # streamed: read in pieces
        self.tags.add(self.loaded[-1].decode().removeprefix("tar:"))


def test_an_image_is_streamed_to_a_host_only_when_it_lacks_it() -> None:
    from harness.backends.base import BackendError
    from harness.backends.swarm_images import load_image

    def engine(tags: set[str]) -> object:
        return type("Engine", (), {"images": _Images(tags)})()

    manager, worker = engine({"session-testnet/node:abc"}), engine(set())
    lines: list[str] = []
    assert load_image(manager, worker, "session-testnet/node:abc", "w1", lines.append)  # type: ignore[arg-type]
    assert worker.images.loaded == [b"tar:session-testnet/node:abc"]  # type: ignore[attr-defined]
    assert lines == ["loading image session-testnet/node:abc onto w1"]
    assert not load_image(manager, worker, "session-testnet/node:abc", "w1", lines.append)  # type: ignore[arg-type]
    assert len(worker.images.loaded) == 1  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="not on the manager's engine"):
        load_image(manager, engine(set()), "session-testnet/node:zzz", "w2", lines.append)  # type: ignore[arg-type]
