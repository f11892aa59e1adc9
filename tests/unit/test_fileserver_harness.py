"""The file server in the harness, without running anything: topology, its record and addresses
on both backends, the state file, ``up --json``, fault targets."""

from __future__ import annotations

import random

import pytest

from harness.backends.base import fileserver_record
from harness.backends.docker import DockerBackend
from harness.faults.targets import NetworkView, NodeInfo, Target, TargetError
from harness.nodekinds.base import NodeContext
from harness.nodekinds.python import PythonNode
from harness.state import NetworkState, StateError
from harness.topology import Topology

pytestmark = pytest.mark.unit


def test_topology_runs_one_by_default_with_a_seeded_key():
    t = Topology(seed="abc")
    assert t.fileserver is True
    assert Topology.from_dict({**t.to_dict(), "fileserver": False}).fileserver is False
    ident = t.fileserver_identity()
    assert ident.x25519_hex == Topology(seed="abc").fileserver_identity().x25519_hex
    assert ident.x25519_hex != Topology(seed="abd").fileserver_identity().x25519_hex
    assert ident.x25519_hex not in {t.node_identity(n).x25519_hex for n in t.node_names()}
    assert t.node_identity("fileserver").x25519_hex == ident.x25519_hex


def test_record_addresses_with_and_without_proxies():
    t = Topology(seed="abc")
    rec = fileserver_record(t, "127.9.0", proxied=True)
    assert (rec.name, rec.kind, rec.public_ip, rec.bind_ip, rec.proxy, rec.storage_port) == (
        "fileserver", "fileserver", "127.9.0.3", "127.9.0.4", "fileserver", 22050)
    assert rec.admin_url == "http://127.9.0.4:22030"
    bare = fileserver_record(t, "127.9.0", proxied=False)
    assert (bare.public_ip, bare.bind_ip, bare.proxy) == ("127.9.0.4", None, None)


def test_docker_addresses_and_forward_network():
    t = Topology(seed="abc")
    state = NetworkState(name="d", backend="docker", topology=t.to_dict(), seed_url="",
                         admin_token="x", net_index=140)
    state.fileserver = fileserver_record(t, "10.1.0", proxied=True)
    DockerBackend.assign_addresses(state)
    assert (state.fileserver.public_ip, state.fileserver.bind_ip) == ("10.140.0.3", "10.140.0.4")
    assert state.forward_networks == ["10.140.0.0/16"]
    # python nodes get it as --forward-allow
    node = DockerBackend._node_record(DockerBackend.__new__(DockerBackend), t, "sn01")
    ctx = NodeContext(state=state, node=node, listen_ip="10.140.1.2", data_dir="/data",
                      log_file=None, key_seed_hex="00" * 32, topology=t.to_dict())
    argv = PythonNode().argv(ctx)
    assert argv[argv.index("--forward-allow") + 1] == "10.140.0.0/16"


def test_state_round_trip_lookup_and_public_json():
    t = Topology(seed="abc")
    state = NetworkState(name="p", backend="process", topology=t.to_dict(), seed_url="http://s",
                         admin_token="x", net_index=9)
    state.fileserver = fileserver_record(t, "127.9.0", proxied=True)
    loaded = NetworkState.from_json(state.to_json())
    assert loaded.fileserver == state.fileserver
    assert loaded.node("fileserver") is loaded.fileserver
    pub = loaded.public_dict()["fileserver"]
    assert pub == {"name": "fileserver", "url": "http://127.9.0.3:22050", "public_ip": "127.9.0.3",
                   "port": 22050, "pubkey_x25519": t.fileserver_identity().x25519_hex,
                   "admin_url": "http://127.9.0.4:22030", "proxy": "fileserver"}
    state.fileserver = None
    assert NetworkState.from_json(state.to_json()).public_dict()["fileserver"] is None
    with pytest.raises(StateError, match="no node 'fileserver'"):
        state.node("fileserver")


def test_fault_targets_name_it_but_never_draw_it():
    view = NetworkView(tuple(NodeInfo(f"sn0{i}", f"{i:064x}", 0) for i in range(1, 4)),
                       named=("fileserver",))
    assert Target.parse("fileserver").resolve(view) == ["fileserver"]
    assert Target.parse("sn01,fileserver").resolve(view) == ["fileserver", "sn01"]
    assert "fileserver" not in Target.parse("all").resolve(view)
    assert "fileserver" not in Target.parse("random:3").resolve(view, random.Random(1))
    with pytest.raises(TargetError, match="fileserver"):
        Target.parse("nope").resolve(view)  # the error lists it among the known targets
