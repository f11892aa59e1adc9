from __future__ import annotations

import json
import os

import pytest

from harness.state import NetworkState, NodeRecord, StateDir, StateError, list_networks, pid_alive
from harness.topology import Topology, TopologyError, node_index, node_name

pytestmark = pytest.mark.unit


def test_default_topology_has_two_swarms_of_three():
    t = Topology()
    assert t.node_count == 6
    assert t.node_names() == ["sn01", "sn02", "sn03", "sn04", "sn05", "sn06"]
    assert t.effective_min_swarm_size == 3 and t.effective_new_swarm_size == 3


def test_node_keys_follow_the_seed():
    a, b = Topology(seed="x"), Topology(seed="y")
    assert a.node_identity("sn01") == Topology(seed="x").node_identity("sn01")
    assert a.node_identity("sn01").ed25519_hex != b.node_identity("sn01").ed25519_hex
    assert a.node_identity("sn01").ed25519_hex != a.node_identity("sn02").ed25519_hex


@pytest.mark.parametrize("kwargs, fragment", [
    ({"name": "Bad Name"}, "name"),
    ({"swarms": 0}, "swarms"),
    ({"swarm_size": 0}, "swarm_size"),
    ({"swarms": 100, "swarm_size": 3}, "250"),
    ({"proof_interval": 5.0, "proof_timeout": 2.0}, "proof_timeout"),
    ({"rate_limit": -1}, "rate_limit"),
])
def test_invalid_topologies_say_what_is_wrong(kwargs, fragment):
    with pytest.raises(TopologyError, match=fragment):
        Topology(**kwargs)


def test_topology_file_round_trip_and_errors(tmp_path):
    p = tmp_path / "t.json"
    t = Topology(name="abc", swarms=3, seed="s")
    p.write_text(json.dumps(t.to_dict()))
    assert Topology.load(p) == t
    p.write_text('{"swarms": 2, "bogus": 1}')
    with pytest.raises(TopologyError, match="bogus"):
        Topology.load(p)
    p.write_text("{not json")
    with pytest.raises(TopologyError, match="not valid JSON"):
        Topology.load(p)
    with pytest.raises(TopologyError, match="does not exist"):
        Topology.load(tmp_path / "missing.json")


def test_node_names():
    assert node_name(7) == "sn07" and node_index("sn07") == 7
    with pytest.raises(TopologyError):
        node_index("seed")


def test_state_round_trip(tmp_path):
    sd = StateDir("n1", home=tmp_path)
    sd.create()
    st = NetworkState(name="n1", backend="process", topology=Topology(name="n1").to_dict(),
                      seed_url="http://127.1.0.1:22023", admin_token="t", net_index=1)
    st.nodes.append(NodeRecord("sn01", "127.1.1.1", 22021, 22030, "ab" * 32, "cd" * 32, 5))
    sd.save(st)
    loaded = sd.load()
    assert loaded.node("sn01").swarm_id == 5
    assert loaded.node("ab" * 32).name == "sn01"
    assert list_networks(tmp_path) == ["n1"]
    pub = loaded.public_dict()
    assert set(pub["nodes"][0]) >= {"name", "public_ip", "storage_port", "pubkey_ed25519",
                                    "pubkey_x25519", "swarm_id"}
    with pytest.raises(StateError, match="no node 'sn09'"):
        loaded.node("sn09")


def test_missing_and_corrupt_state_give_clear_errors(tmp_path):
    with pytest.raises(StateError, match="no testnet named 'nope'"):
        StateDir("nope", home=tmp_path).load()
    sd = StateDir("bad", home=tmp_path)
    sd.create()
    sd.state_file.write_text("garbage")
    with pytest.raises(StateError, match="unreadable"):
        sd.load()


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(0)
