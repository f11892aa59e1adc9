"""Two versions of our node in one testnet (``N:python@REF``) on the process backend: each
group runs its own revision's code, and messages cross the two groups' swarms."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from harness.client import Account, SessionClient
from harness.naming import unique_name
from harness.network import Testnet
from harness.nodekinds.base import NodeKindError
from harness.nodekinds.revisions import repo_root, revisions_home
from harness.state import StateDir
from harness.topology import NodeGroup, Topology
from nodes.protocol.swarm import swarm_for, swarm_space

pytestmark = pytest.mark.integration

#: an older revision whose node differs from today's (the parent of aba6ed1, which changed how
#: not-ready nodes are named) but takes the same command line and environment
OLD = "c2abfbbea015598e7fe26eac811031176f61d177"
#: the parent of the commit that moved node secrets into the environment
PREDATES_ENV = "a66d8c0~1"


def _need_history() -> Path:
    repo = repo_root()
    for ref in (OLD, PREDATES_ENV):
        if subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{ref}^{{commit}}"],
                          capture_output=True).returncode != 0:
            pytest.skip(f"the checkout has no commit {ref} (a shallow clone?)")
    return repo


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.py")):
        if "__pycache__" not in p.parts:
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _account_in(swarm: int, swarm_ids: list[int]) -> Account:
    while True:
        acc = Account.generate()
        if swarm_for(swarm_space(acc.session_id), swarm_ids) == swarm:
            return acc


async def test_two_revisions_side_by_side_deliver_across_their_swarms():
    _need_history()
    topology = Topology(name=unique_name("vers"),
                        nodes=(NodeGroup(3), NodeGroup(3, ref=OLD)), swarms=2)
    net = Testnet.up(topology, backend="process", timeout=90)
    try:
        old_root = revisions_home() / OLD
        # the testnet pins the commit; sn04-06 run the extracted old revision, sn01-03 ours
        by_name = {n.name: n for n in net.nodes}
        assert [by_name[f"sn0{i}"].revision for i in range(1, 7)] == [None] * 3 + [OLD] * 3
        assert net.to_dict()["nodes"][3]["revision"] == OLD
        installed = Path(__file__).resolve().parents[2] / "nodes"
        assert _tree_digest(old_root / "nodes") != _tree_digest(installed), \
            "the old revision's node must differ from today's for this test to mean anything"
        for n in net.nodes:
            path = _environ(n.runtime["pid"])["PYTHONPATH"].split(":")[0]
            assert (path == str(old_root)) == (n.revision == OLD), (n.name, path)

        # an account in each swarm; each swarm holds nodes of both revisions or of one: either
        # way every member (old or new) must confirm the store and the recipient must get it
        swarms = net.swarms()
        ids = sorted(swarms)
        assert len(ids) == 2
        revs_by_swarm = {sid: {by_name[m].revision for m in members} for sid, members in swarms.items()}
        assert set().union(*revs_by_swarm.values()) == {None, OLD}
        alice_acc, bob_acc = _account_in(ids[0], ids), _account_in(ids[1], ids)
        records: list = []
        async with SessionClient(net.seed_url, alice_acc, sink=records, retry_backoff=0.05) as alice, \
                SessionClient(net.seed_url, bob_acc, sink=records, retry_backoff=0.05) as bob:
            sent = await alice.send(bob.session_id, "from the first swarm")
            assert sent.ok and sent.confirmations == len(swarms[ids[1]])
            got = await bob.wait_for(count=1, timeout=30)
            assert [(m.sender, m.body) for m in got] == [(alice.session_id, "from the first swarm")]
            reply = await bob.send(alice.session_id, "and back")
            assert reply.ok and reply.confirmations == len(swarms[ids[0]])
            got = await alice.wait_for(count=1, timeout=30)
            assert [(m.sender, m.body) for m in got] == [(bob.session_id, "and back")]
        # onion paths crossed both versions: some hop of some attempt ran the old revision
        old_keys = {n.pubkey_ed25519 for n in net.nodes if n.revision == OLD}
        hops = {h["ed25519"] for r in records for a in r.attempts for h in (a.path or [])}
        dests = {a.destination.get("ed25519") for r in records for a in r.attempts if a.destination}
        assert (hops | dests) & old_keys
    finally:
        net.down()


def test_a_revision_older_than_the_node_contract_is_refused_before_anything_starts():
    _need_history()
    name = unique_name("vers")
    topology = Topology(name=name, nodes=(NodeGroup(3), NodeGroup(3, ref=PREDATES_ENV)), swarms=2)
    with pytest.raises(NodeKindError) as err:
        Testnet.up(topology, backend="process", timeout=30)
    msg = str(err.value)
    assert f"revision {PREDATES_ENV!r}" in msg and "predates the node contract" in msg
    assert "SESSION_TESTNET_JOIN_TOKEN" in msg and "SESSION_TESTNET_KEY_SEED" in msg
    assert not StateDir(name).exists()
    with pytest.raises(NodeKindError, match="'no-such-ref' is not a commit"):
        Testnet.up(Topology(name=name, nodes=(NodeGroup(3, ref="no-such-ref"),), swarms=1),
                   backend="process")
