"""Where the docker backend puts real storage servers (no engine: addresses only)."""

from __future__ import annotations

from pathlib import Path

from harness.backends.docker import SEED_OMQ_BASE, DockerBackend
from harness.nodekinds.oxen_storage import DEFAULT_OMQ_PORT, OxenStorageNode
from harness.state import NetworkState, StateDir
from harness.topology import Topology


def _plan(tmp_path: Path, proxies: bool = True) -> NetworkState:
    topology = Topology.from_dict({"name": "rd", "proxies": proxies,
                                   "nodes": [f"10:oxen-storage={tmp_path / 'oxen-storage'}"]})
    be = DockerBackend(StateDir("rd", tmp_path))
    state = NetworkState(name="rd", backend="docker", topology=topology.to_dict(), seed_url="",
                         admin_token="x", net_index=200, seed_runtime={})
    state.nodes = [be._node_record(topology, n) for n in topology.node_names()]
    be.assign_addresses(state)
    return state


def test_real_nodes_get_their_own_addresses_and_seed_endpoints(tmp_path: Path) -> None:
    state = _plan(tmp_path)
    sn03 = state.node("sn03")
    assert sn03.kind == "oxen-storage" and sn03.admin_port == 0
    assert (sn03.public_ip, sn03.bind_ip) == ("10.200.3.1", "10.200.3.2")
    assert sn03.omq_port == sn03.omq_bind_port == DEFAULT_OMQ_PORT
    assert sn03.oxend_endpoint == f"tcp://10.200.0.2:{SEED_OMQ_BASE + 3}"
    assert len({n.oxend_endpoint for n in state.nodes}) == 10, "one seed endpoint per node"
    # both proxies of a node listen on its advertised address and lead to its own address
    specs = OxenStorageNode().proxies(sn03)
    assert [(p["listen"], p["upstream"]) for p in specs] == [
        ("10.200.3.1:22021", "10.200.3.2:22021"), ("10.200.3.1:22020", "10.200.3.2:22020")]


def test_without_proxies_real_nodes_advertise_their_own_address(tmp_path: Path) -> None:
    sn01 = _plan(tmp_path, proxies=False).node("sn01")
    assert sn01.public_ip == "10.200.1.2" and sn01.bind_ip is None and sn01.proxy is None
    assert OxenStorageNode().proxies(sn01) == []
