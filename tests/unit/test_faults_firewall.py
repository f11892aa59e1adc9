"""The firewall family: ``block_clients`` disables the public proxies of a range's nodes after
moving every peer onto link proxies that go straight to those nodes' processes; undo puts
everything back (fake Toxiproxy and fake testnet: no processes)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from test_faults_actions import FakeNet, make_faults
from test_faults_toxiproxy import FakeToxiproxy

from harness.faults import TargetError, Timeline
from harness.faults.families.firewall import blocked_range

pytestmark = pytest.mark.unit


@pytest.fixture
def tp() -> Iterator[FakeToxiproxy]:
    f = FakeToxiproxy()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def net(tp: FakeToxiproxy) -> FakeNet:
    n = FakeNet(tp.url)
    for rec in n.state.nodes:
        tp.proxies[rec.name] = {"name": rec.name, "listen": f"{rec.public_ip}:22021",
                                "upstream": f"{rec.bind_ip}:22021", "enabled": True, "toxics": {}}
    return n


def test_ranges():
    assert str(blocked_range("127.5.6.1", 22)) == "127.5.4.0/22"
    assert str(blocked_range("10.7.3.1", 24)) == "10.7.3.0/24"


def test_a_range_is_blocked_for_clients_and_rerouted_for_peers(net: FakeNet, tp: FakeToxiproxy):
    before = (copy.deepcopy(tp.proxies), copy.deepcopy(net.admin))
    f = make_faults(net, timeline=Timeline())
    # 127.250.i.1 for node i: a /22 around sn02 holds sn01-sn03
    fault = f.block_clients("sn02", prefix=22)
    blocked = ["sn01", "sn02", "sn03"]
    assert fault.nodes == blocked
    assert fault.result == {"ranges": ["127.250.0.0/22"], "blocked": blocked}
    for b in blocked:
        assert tp.proxies[b]["enabled"] is False  # clients are refused
        rec = net.node(b)
        for src in (n.name for n in net.nodes if n.name != b):
            link = tp.proxies[f"{src}->{b}"]
            assert link["enabled"] and link["upstream"] == f"{rec.bind_ip}:22021"
            assert net.admin[src]["overrides"][rec.pubkey_ed25519] == link["listen"]
    assert all(tp.proxies[n]["enabled"] for n in ("sn04", "sn05", "sn06"))
    ev = f.timeline.events[-1]
    assert (ev.action, ev.phase, ev.nodes, ev.params) == ("block_clients", "apply", blocked,
                                                          {"prefix": 22})
    f.remove(fault)
    assert (tp.proxies, net.admin) == before


def test_a_link_proxy_that_exists_is_repointed_and_restored(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    slow = f.latency("sn04", 100, link="sn01")  # a link proxy sn04->sn01 with a toxic
    upstream = tp.proxies["sn04->sn01"]["upstream"]
    block = f.block_clients("sn01")
    assert block.nodes == ["sn01"]
    assert tp.proxies["sn04->sn01"]["upstream"] == f"{net.node('sn01').bind_ip}:22021"
    assert tp.proxies["sn04->sn01"]["toxics"]  # the link toxic still applies
    f.remove(block)
    assert tp.proxies["sn04->sn01"]["upstream"] == upstream and tp.proxies["sn01"]["enabled"]
    assert "sn05->sn01" not in tp.proxies
    f.remove(slow)
    assert "sn04->sn01" not in tp.proxies


def test_clear_ends_a_block(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    f.block_clients("sn05")
    make_faults(net).clear()
    assert tp.proxies["sn05"]["enabled"] and not [p for p in tp.proxies if "->" in p]
    assert all(not a["overrides"] for a in net.admin.values())


def test_a_range_holding_every_node_is_refused(net: FakeNet, tp: FakeToxiproxy):
    before = copy.deepcopy(tp.proxies)
    with pytest.raises(TargetError, match="holds every node"):
        make_faults(net).block_clients("sn01", prefix=16)
    assert tp.proxies == before
