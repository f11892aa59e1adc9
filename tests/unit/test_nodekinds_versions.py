"""Node groups of another revision (``N:python@REF``) and of the user's own node
(``N:command=PATH``, ``N:image=IMAGE``): parsing, the contract they are handed, the faults they
take, the image recipe of a revision. Pure: no processes, no git, no engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import nodekinds
from harness.images.node import context_hash
from harness.images.revision import Revision, inputs_hash, revision_sources, revision_tag
from harness.images.sources import NodeSources
from harness.nodekinds.base import BEHAVIOUR, CHURN, CLOCK, NETWORK, PARTITION, NodeContext, NodeKindError
from harness.nodekinds.custom import CONTRACT_VARS, ENV_PREFIX, contract_env
from harness.nodekinds.names import PYTHON_ARGV_FLAGS, PYTHON_ENV_NAMES
from harness.nodekinds.python import PythonNode
from harness.state import NetworkState, NodeRecord
from harness.topology import NodeGroup, Topology
from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_KEY_SEED, derive_join_token


def test_revision_groups_parse_from_the_cli_and_json() -> None:
    g = NodeGroup.parse("3:python@HEAD~5")
    assert (g.count, g.kind, g.ref, g.path) == (3, "python", "HEAD~5", None)
    assert g.spec() == "3:python@HEAD~5"
    assert NodeGroup.parse("2:@v1.2") == NodeGroup(2, "python", ref="v1.2")
    t = Topology.from_dict({"nodes": [{"count": 3}, {"count": 3, "kind": "python", "ref": "abc123"}]})
    assert [g.ref for g in t.nodes] == [None, "abc123"]
    assert t.node_group("sn04").ref == "abc123" and t.node_group("sn03").ref is None
    assert Topology.from_dict(json.loads(json.dumps(t.to_dict()))) == t  # the state round trip


def test_custom_groups_keep_image_names_and_make_programs_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert NodeGroup.parse("3:command=bin/node").path == str(tmp_path / "bin" / "node")
    assert NodeGroup.parse("3:image=me/node:1").path == "me/node:1"
    t = Topology.from_dict({"nodes": [{"count": 6, "kind": "command", "path": "/x/node",
                                        "has_admin": True}]})
    assert t.nodes[0].has_admin is True and t.swarms == 2


def test_python_argv_uses_only_the_flags_a_revision_is_checked_for() -> None:
    st = NetworkState(name="t", backend="process", topology={}, seed_url="http://127.9.0.1:22023",
                      admin_token="tok", net_index=9)
    ctx = _ctx(st, Topology(rate_limit=5).to_dict(), admin_port=22030)
    argv = PythonNode().argv(ctx)
    assert {a for a in argv if a.startswith("--")} == set(PYTHON_ARGV_FLAGS)
    env = PythonNode().env(ctx)
    assert set(env) == set(PYTHON_ENV_NAMES)  # the installed node: no PYTHONPATH of its own


def test_contract_env_holds_everything_and_secrets_never_reach_argv() -> None:
    st = NetworkState(name="t", backend="process", topology={}, seed_url="http://127.9.0.1:22023",
                      admin_token="tok", net_index=9)
    ctx = _ctx(st, Topology().to_dict(), admin_port=22030)
    with_admin = contract_env(ctx, has_admin=True)
    assert {k for k in with_admin if k.startswith(ENV_PREFIX)} >= {ENV_PREFIX + v for v in CONTRACT_VARS}
    assert with_admin[ENV_PREFIX + "LISTEN_IP"] == "127.9.1.2"
    assert with_admin[ENV_PREFIX + "PUBLIC_IP"] == "127.9.1.1"
    assert with_admin[ENV_PREFIX + "ADMIN_PORT"] == "22030"
    assert with_admin[ENV_KEY_SEED] == "11" * 32
    assert with_admin[ENV_JOIN_TOKEN] == derive_join_token("tok")
    assert with_admin[ENV_ADMIN_TOKEN] == "tok"
    without = contract_env(ctx, has_admin=False)
    assert without[ENV_PREFIX + "ADMIN_PORT"] == "0" and ENV_ADMIN_TOKEN not in without
    kind = nodekinds.node_kind("command", "/opt/node", has_admin=False)
    assert kind.argv(ctx) == ["/opt/node"]
    assert nodekinds.node_kind("image", "me/node:1").argv(ctx) == []


def test_faults_on_custom_nodes_follow_the_declared_admin_interface() -> None:
    plain = NodeRecord(name="sn02", public_ip="127.9.2.1", storage_port=22021, admin_port=0,
                       pubkey_ed25519="aa" * 32, pubkey_x25519="bb" * 32, kind="command")
    admin = NodeRecord(name="sn03", public_ip="127.9.3.1", storage_port=22021, admin_port=22030,
                       pubkey_ed25519="aa" * 32, pubkey_x25519="bb" * 32, kind="command")
    for family in (NETWORK, CHURN):
        nodekinds.check_fault(plain, family)
    for family in (BEHAVIOUR, CLOCK, PARTITION):
        with pytest.raises(NodeKindError, match='sn02 runs the user.s own .command. node.*"has_admin": true'):
            nodekinds.check_fault(plain, family)
        nodekinds.check_fault(admin, family)
    assert nodekinds.record_kind(admin).has_admin and not nodekinds.record_kind(plain).has_admin
    assert nodekinds.group_kind(NodeGroup(3, "image", "me/n", has_admin=True)).has_admin
    assert not nodekinds.group_kind(NodeGroup(3, "image", "me/n")).has_admin


def test_a_revision_image_is_the_node_recipe_with_the_revisions_nodes(tmp_path: Path) -> None:
    commit = "ab" * 20
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "requirements.txt").write_text("aiohttp>=3.9\n")
    (tmp_path / "nodes" / "__init__.py").write_text("")
    rev = Revision("HEAD~1", commit, tmp_path)
    assert revision_tag(rev) == "session-testnet/node-rev:" + commit[:12]
    sources = revision_sources(rev)
    assert sources.requirements() == ("aiohttp>=3.9",)
    assert [a for a, _ in sources.files()] == ["nodes/__init__.py", "nodes/requirements.txt"]
    assert sources.dockerfile_bytes() == NodeSources.installed().dockerfile_bytes()
    before = inputs_hash(rev, "base:1")
    assert before != inputs_hash(rev, "base:2")  # the base is an input
    (tmp_path / "nodes" / "__init__.py").write_text("X = 1\n")
    assert inputs_hash(rev, "base:1") != before  # so is every file of the revision
    # the installed node's hash is the same recipe over the installed package
    assert inputs_hash(Revision("x", commit, Path(str(NodeSources.installed().nodes)).parent),
                       "base:1") == context_hash("base:1")


def _ctx(st: NetworkState, topology: dict, admin_port: int) -> NodeContext:
    node = NodeRecord(name="sn01", public_ip="127.9.1.1", storage_port=22021, admin_port=admin_port,
                      pubkey_ed25519="aa" * 32, pubkey_x25519="bb" * 32, bind_ip="127.9.1.2",
                      proxy="sn01")
    return NodeContext(state=st, node=node, listen_ip="127.9.1.2", data_dir="/d/sn01",
                       log_file="/l/sn01.log", key_seed_hex="11" * 32, topology=topology)


@pytest.mark.parametrize("group", [NodeGroup(6, ref="HEAD~1"), NodeGroup(6, "image", "me/n:1"),
                                   NodeGroup(10, "oxen-storage", "/bin/true")])
def test_compose_files_refuse_groups_they_cannot_run(group: NodeGroup) -> None:
    from harness.compose import compose_dict

    with pytest.raises(ValueError, match="compose files run our python nodes of the installed"):
        compose_dict(Topology(nodes=(group,), swarms=group.count // 3))
