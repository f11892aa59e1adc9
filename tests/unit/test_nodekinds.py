"""Node implementations (harness.nodekinds) and node groups in the topology: pure parts, no
processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import nodekinds
from harness.cli import main as cli_main
from harness.nodekinds.base import BEHAVIOUR, CHURN, CLOCK, NETWORK, PARTITION, NodeContext, NodeKindError
from harness.nodekinds.oxen_storage import OxenStorageNode, place_nodes, write_node_list
from harness.nodekinds.probes import swarm_probe_account
from harness.state import NetworkState, NodeRecord
from harness.topology import NodeGroup, Topology, TopologyError
from nodes.protocol.swarm import swarm_space
from nodes.seed.omq.config import load_real_nodes


def test_group_specs_parse_and_paths_become_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(nodekinds.PATH_ENV[nodekinds.OXEN_STORAGE], raising=False)
    assert NodeGroup.parse("6") == NodeGroup(6, "python")
    assert NodeGroup.parse("6:python") == NodeGroup(6, "python")
    g = NodeGroup.parse("12:oxen-storage=bin/oxen-storage")
    assert g.kind == "oxen-storage" and g.path == str(tmp_path / "bin" / "oxen-storage")
    assert NodeGroup.parse("10:oxen-storage").path is None
    monkeypatch.setenv(nodekinds.PATH_ENV[nodekinds.OXEN_STORAGE], "/opt/oxen-storage")
    assert NodeGroup.parse("10:oxen-storage").path == "/opt/oxen-storage"


@pytest.mark.parametrize("spec, fragment", [
    ("x:python", "expected N, N:KIND, N:KIND=PATH or N:python@REF"),
    ("3:python@", "'@' must be followed by a git revision"),
    ("3:python@-x", "is not a git revision"),
    ("3:python@a b", "is not a git revision"),
    ("3:oxen-storage@HEAD=/bin/true", "only python nodes run a git revision"),
    ("3:command", "kind 'command' needs the node program"),
    ("3:image", "kind 'image' needs the node image"),
    ("0:python", "count must be an integer >= 1"),
    ("3:lokinet", "unknown kind 'lokinet'"),
    ("3:python=/usr/bin/x", "takes no path"),
])
def test_bad_group_specs_say_what_is_wrong(spec: str, fragment: str) -> None:
    with pytest.raises(TopologyError, match=fragment):
        NodeGroup.parse(spec)


def test_topology_with_groups_derives_swarms_and_kinds(tmp_path: Path) -> None:
    t = Topology.from_dict({"nodes": ["12:oxen-storage=/bin/true"], "swarm_size": 3})
    assert (t.node_count, t.swarms, t.kinds) == (12, 4, ["oxen-storage"])
    assert t.node_group("sn12").kind == "oxen-storage"
    path = tmp_path / "topo.json"
    path.write_text(json.dumps(t.to_dict()))
    assert Topology.load(path) == t
    assert Topology.from_dict({"nodes": [{"count": 4}, {"count": 2, "kind": "python"}]}).node_count == 6
    assert Topology().kinds == ["python"] and Topology().node_count == 6


@pytest.mark.parametrize("data, fragment", [
    ({"nodes": ["9:oxen-storage=/bin/true"]}, "needs at least 10 nodes, got 9"),
    ({"nodes": ["10:oxen-storage=/bin/true", "3:python"]}, "cannot mix"),
    ({"nodes": ["12"], "swarms": 2}, "make 4 swarm"),
    ({"nodes": [{"count": 3, "colour": "red"}]}, "expected fields count, has_admin, kind, path, placement, ref"),
    ({"nodes": [{"count": 3, "kind": "python", "has_admin": True}]}, "has_admin is declared for"),
    ({"nodes": [{"count": 3, "kind": "command", "path": "/bin/true", "has_admin": "yes"}]},
     "has_admin must be true or false"),
    ({"nodes": ["10:oxen-storage=/bin/true", "3:command=/bin/true"]}, "cannot mix command nodes"),
])
def test_invalid_groups_are_refused(data: dict, fragment: str) -> None:
    with pytest.raises(TopologyError, match=fragment):
        Topology.from_dict(data)


def test_kinds_declare_admin_and_fault_families() -> None:
    py = nodekinds.node_kind("python")
    real = nodekinds.node_kind("oxen-storage", "/bin/true")
    assert py.has_admin and not real.has_admin
    for family in (NETWORK, CHURN, BEHAVIOUR, CLOCK):
        py.refuse_fault(family, "sn01")  # ours support everything
    real.refuse_fault(NETWORK, "sn01")
    real.refuse_fault(CHURN, "sn01")
    for backend in ("process", "docker"):  # through the pair links (docs/nodes.md)
        real.refuse_fault(PARTITION, "sn01", backend)
    with pytest.raises(NodeKindError, match="sn01 runs 'oxen-storage'.*only the docker, process"):
        real.refuse_fault(PARTITION, "sn01", "other")
    for family in (BEHAVIOUR, CLOCK):
        with pytest.raises(NodeKindError, match="sn01 runs 'oxen-storage'.*admin interface"):
            real.refuse_fault(family, "sn01")


def test_fault_checks_and_proxy_names_per_node() -> None:
    st = _state()
    place_nodes(st, [])
    real = st.nodes[0]
    ours = NodeRecord(name="sn11", public_ip="127.9.11.1", storage_port=22021, admin_port=22030,
                      pubkey_ed25519="aa" * 32, pubkey_x25519="bb" * 32, bind_ip="127.9.11.2", proxy="sn11")
    nodekinds.check_fault(ours, CLOCK)
    nodekinds.check_fault(real, NETWORK)
    with pytest.raises(ValueError, match="sn01 runs 'oxen-storage', which does not support clock faults"):
        nodekinds.check_fault(real, CLOCK)
    assert nodekinds.proxy_names(ours) == ["sn11"]
    assert nodekinds.proxy_names(real) == ["sn01", "sn01-omq"]


def test_runnable_checks_name_what_is_missing(tmp_path: Path) -> None:
    # on docker the libraries come with the server's image: only the binary must be there
    nodekinds.check_groups([NodeGroup(10, "oxen-storage", "/bin/true")], "docker")
    with pytest.raises(NodeKindError, match="no executable oxen-storage binary at"):
        nodekinds.check_groups([NodeGroup(10, "oxen-storage", str(tmp_path / "missing"))], "docker")
    with pytest.raises(NodeKindError, match="no executable oxen-storage binary at"):
        nodekinds.check_groups([NodeGroup(10, "oxen-storage", str(tmp_path / "missing"))], "process")
    nodekinds.check_groups([NodeGroup(6)], "docker")
    # the user's own nodes: a program on the process backend, an image on docker
    nodekinds.check_groups([NodeGroup(3, "command", "/bin/true")], "process")
    with pytest.raises(NodeKindError, match="command nodes run on the process backend only"):
        nodekinds.check_groups([NodeGroup(3, "command", "/bin/true")], "docker")
    with pytest.raises(NodeKindError, match="no executable node program at"):
        nodekinds.check_groups([NodeGroup(3, "command", str(tmp_path / "missing"))], "process")
    with pytest.raises(NodeKindError, match="image nodes run on the docker, swarm backend only"):
        nodekinds.check_groups([NodeGroup(3, "image", "my/node:1")], "process")
    # the swarm backend runs our nodes and the user's images in groups (placements), not the
    # real server
    nodekinds.check_groups([NodeGroup(2, placement="region=eu"), NodeGroup(2)], "swarm")
    with pytest.raises(NodeKindError, match="oxen-storage nodes run on the docker, process backend only, not swarm"):
        nodekinds.check_groups([NodeGroup(10, "oxen-storage", "/bin/true")], "swarm")


def _state(n: int = 10, proxies: bool = True) -> NetworkState:
    st = NetworkState(name="t", backend="process", topology={}, seed_url="http://127.9.0.1:22023",
                      admin_token="x", net_index=9, seed_runtime={"ip": "127.9.0.1"})
    for i in range(1, n + 1):
        st.nodes.append(NodeRecord(name=f"sn{i:02d}", public_ip=f"127.9.{i}.1", storage_port=22021,
                                   admin_port=0, pubkey_ed25519="aa" * 32, pubkey_x25519="bb" * 32,
                                   bind_ip=f"127.9.{i}.2" if proxies else None,
                                   proxy=f"sn{i:02d}" if proxies else None, kind="oxen-storage"))
    return st


def test_ports_are_distinct_across_testnets_and_the_seed_accepts_the_list(tmp_path: Path) -> None:
    other = _state()
    place_nodes(other, [])
    st = _state()
    place_nodes(st, [other])
    ports = []
    for s in (other, st):
        for n in s.nodes:
            assert n.omq_port != n.omq_bind_port, "the proxy needs a port of its own"
            assert n.oxend_endpoint and n.oxend_endpoint.startswith("tcp://127.9.0.1:")
            ports += [n.omq_port, n.omq_bind_port, int(n.oxend_endpoint.rsplit(":", 1)[1])]
    assert len(ports) == len(set(ports)) == 60
    path = write_node_list(st, tmp_path)
    assert path is not None
    real = load_real_nodes(path)  # the seed's own parser: the file satisfies its contract
    assert [r.name for r in real] == [n.name for n in st.nodes]
    assert "key" not in path.read_text().lower()
    assert nodekinds.seed_args(st, tmp_path) == ["--oxenmq-nodes", str(path)]
    assert write_node_list(_state(0), tmp_path) is None


def test_unproxied_nodes_advertise_their_own_port() -> None:
    st = _state(proxies=False)
    place_nodes(st, [])
    assert all(n.omq_port == n.omq_bind_port for n in st.nodes)
    assert OxenStorageNode("/bin/true").proxies(st.nodes[0]) == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to write dh.pem")
def test_real_node_command_line_and_proxies(tmp_path: Path) -> None:
    st = _state()
    place_nodes(st, [])
    node = st.nodes[0]
    secret = "cd" * 32
    kind = OxenStorageNode("/bin/true")
    argv = kind.argv(NodeContext(state=st, node=node, listen_ip=node.bind_ip or "", data_dir=str(tmp_path),
                                 log_file=None, key_seed_hex=secret, topology={}))
    assert argv[0] == "/bin/true" and "--testnet" in argv
    opts = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert opts["--bind-ip"] == "127.9.1.2" and opts["--omq-port"] == str(node.omq_bind_port)
    assert opts["--oxend-rpc"] == node.oxend_endpoint and opts["--https-port"] == "22021"
    assert secret not in " ".join(argv), "key material never goes on a command line"
    assert (tmp_path / "dh.pem").read_text().startswith("-----BEGIN DH PARAMETERS-----")
    https, omq = kind.proxies(node)
    assert https["listen"] == "127.9.1.1:22021" and https["upstream"] == "127.9.1.2:22021"
    assert omq["name"] == "sn01-omq"
    assert omq["listen"] == f"127.9.1.1:{node.omq_port}" and omq["upstream"] == f"127.9.1.2:{node.omq_bind_port}"


def test_probe_account_lands_on_the_swarm_id() -> None:
    for sid in (0, 1, 2**63 - 1, 0xBFFFFFFFFFFFFFFF):
        acct = swarm_probe_account(sid)
        assert acct.startswith("05") and len(acct) == 66
        assert swarm_space(acct) == sid


def test_cli_refuses_too_few_real_nodes_before_starting_anything(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_TESTNET_HOME", str(tmp_path))
    res = CliRunner().invoke(cli_main, ["up", "-n", "few", "--nodes", "4:oxen-storage=/bin/true"])
    assert res.exit_code == 1
    assert "needs at least 10 nodes, got 4" in res.output
    res = CliRunner().invoke(cli_main, ["up", "-n", "nobin", "--nodes",
                                        f"12:oxen-storage={tmp_path / 'nope'}"])
    assert res.exit_code == 1 and "no executable oxen-storage binary" in res.output
    assert not (tmp_path / "networks").exists() or not any((tmp_path / "networks").iterdir())


def test_file_server_kind_is_not_a_node_group_and_takes_network_and_churn_faults_only():
    from harness.nodekinds import FILESERVER, KIND_NAMES, kind_class
    from harness.nodekinds.base import NodeKindError
    from harness.topology import NodeGroup, TopologyError

    assert FILESERVER not in KIND_NAMES
    with pytest.raises(TopologyError):
        NodeGroup(count=1, kind=FILESERVER)
    kind = kind_class(FILESERVER)()
    kind.refuse_fault("network", "fileserver")
    kind.refuse_fault("churn", "fileserver")
    for family in ("behaviour", "clock", "partition"):
        with pytest.raises(NodeKindError, match="file server"):
            kind.refuse_fault(family, "fileserver")
