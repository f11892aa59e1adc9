"""The user's own node implementation (``N:command=PATH``) on the process backend: a program
that gets everything through the node contract's environment (docs/nodes.md, "Your own node")
— here examples/nodes/snode_wrapper.py, which runs our node with it — joins, serves clients,
and takes the faults its group's declared interface allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.client import Account, SessionClient
from harness.faults import Faults
from harness.naming import unique_name
from harness.network import Testnet
from harness.nodekinds.custom import CONTRACT_VARS, ENV_PREFIX
from harness.topology import NodeGroup, Topology
from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_KEY_SEED

pytestmark = pytest.mark.integration

WRAPPER = Path(__file__).resolve().parents[2] / "examples" / "nodes" / "snode_wrapper.py"


def _proc(pid: int, what: str) -> list[str]:
    return Path(f"/proc/{pid}/{what}").read_bytes().decode().split("\0")


async def test_custom_command_nodes_join_deliver_and_take_only_declared_faults():
    topology = Topology(name=unique_name("custom"), swarms=2, nodes=(
        NodeGroup(3, "command", str(WRAPPER)),
        NodeGroup(3, "command", str(WRAPPER), has_admin=True)))
    net = Testnet.up(topology, backend="process", timeout=90)
    try:
        nodes = {n.name: n for n in net.nodes}
        assert [nodes[f"sn0{i}"].kind for i in range(1, 7)] == ["command"] * 6
        assert [bool(nodes[f"sn0{i}"].admin_port) for i in range(1, 7)] == [False] * 3 + [True] * 3
        secrets = {net.node_env(nodes["sn01"])[ENV_KEY_SEED], net.state.admin_token}
        for n in net.nodes:
            argv = _proc(n.runtime["pid"], "cmdline")
            assert "nodes.snode" in argv  # the wrapper exec'd our node in its own process
            assert not any(s in a for a in argv for s in secrets | {net.node_env(n)[ENV_KEY_SEED]})
            env = dict(e.split("=", 1) for e in _proc(n.runtime["pid"], "environ") if "=" in e)
            assert {ENV_PREFIX + v for v in CONTRACT_VARS} <= set(env)
            assert env[ENV_PREFIX + "PUBLIC_IP"] == n.public_ip
            assert env[ENV_PREFIX + "LISTEN_IP"] == n.bind_ip
            assert env[ENV_PREFIX + "PUBKEY_ED25519"] == n.pubkey_ed25519
            assert ENV_JOIN_TOKEN in env and (ENV_ADMIN_TOKEN in env) == bool(n.admin_port)

        async with SessionClient(net.seed_url, Account.generate(), retry_backoff=0.05) as alice, \
                SessionClient(net.seed_url, Account.generate(), retry_backoff=0.05) as bob:
            sent = await alice.send(bob.session_id, "through nodes of our own")
            assert sent.ok and sent.confirmations == 3
            got = await bob.wait_for(count=1, timeout=30)
            assert [m.body for m in got] == ["through nodes of our own"]

        with Faults(net, seed="1") as faults:
            # undeclared admin interface: behaviours, clock and partitions are refused up front
            with pytest.raises(ValueError, match='sn01 runs the user.s own .command. node.*"has_admin": true'):
                faults.apply("misbehave", "sn01", drop_stores=True)
            with pytest.raises(ValueError, match="sn02 .*clock faults"):
                faults.apply("skew_clock", "sn02", offset_ms=5000)
            # declared: the node's admin interface takes them
            faults.apply("misbehave", "sn04", drop_stores=True)
            assert net.node_admin("sn04", "behaviours")["drop_stores"] is True
            # network faults and churn work on every node
            faults.apply("latency", "sn01", ms=100)
            faults.apply("pause", "sn02")
            assert net.node("sn02").runtime.get("paused")
        assert net.node_admin("sn04", "behaviours")["drop_stores"] is False  # undone on exit
        assert not net.node("sn02").runtime.get("paused")
        with Faults(net, seed="2") as faults:
            faults.apply("kill", "sn03")
            assert not net.backend.is_running(net.state, "sn03")
        net.wait_ready(timeout=60)  # sn03 started again (by the wrapper) and rejoined
        assert net.backend.is_running(net.state, "sn03")
    finally:
        net.down()


def test_a_missing_program_is_refused_before_anything_starts(tmp_path: Path):
    from harness.nodekinds.base import NodeKindError

    topology = Topology(name=unique_name("custom"), swarms=1,
                        nodes=(NodeGroup(3, "command", str(tmp_path / "nope")),))
    with pytest.raises(NodeKindError, match="no executable node program at"):
        Testnet.up(topology, backend="process")
