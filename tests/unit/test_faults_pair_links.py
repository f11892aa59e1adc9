"""Per-link faults between real storage servers: they act on the pair links every two real nodes
talk through from the start (``sn01->sn02`` HTTPS, ``sn01->sn02-omq`` OxenMQ), never create or
delete link proxies, and never call an admin interface (real servers have none; the seed's node
list routes them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_faults_actions import FakeNet, make_faults, tp  # noqa: F401 - the fixture
from test_faults_toxiproxy import FakeToxiproxy

from harness.faults import FaultError
from harness.nodekinds import OXEN_STORAGE
from harness.nodekinds.oxen_storage import OxenStorageNode, pair_links, write_node_list
from harness.topology import node_index

pytestmark = pytest.mark.unit


def real_net(tp: FakeToxiproxy, backend: str = "process") -> FakeNet:  # noqa: F811
    """A FakeNet of 6 real nodes with what `testnet up` makes for them: both node proxies and
    every pair link."""
    n = FakeNet(tp.url)
    n.state.backend = backend
    for rec in n.state.nodes:
        i = node_index(rec.name)
        rec.kind, rec.admin_port = OXEN_STORAGE, 0
        rec.omq_port, rec.omq_bind_port = 26000 + i, 27000 + i
    specs = [p for rec in n.state.nodes for p in OxenStorageNode().proxies(rec)]
    specs += [p for link in pair_links(n.state, lambda s, d: n.backend.link_address(n.state, s, d))
              for p in link.proxies()]
    for p in specs:
        tp.proxies[p["name"]] = {**p, "toxics": {}}
    n.admin_calls = []  # type: ignore[attr-defined]

    def no_admin(node: str, path: str, body: Any = None, method: str = "GET") -> Any:
        n.admin_calls.append((node, path))  # type: ignore[attr-defined]
        raise AssertionError(f"admin call {method} {path} to {node}, a node without admin interface")

    n.node_admin = no_admin  # type: ignore[method-assign]
    return n


def admin_writes(net: FakeNet) -> list[tuple[str, str]]:
    return net.admin_calls  # type: ignore[attr-defined, no-any-return]


def test_testnet_up_plans_a_link_proxy_pair_and_a_udp_relay_per_ordered_pair(
        tp: FakeToxiproxy, tmp_path: Path) -> None:  # noqa: F811
    net = real_net(tp)
    links = pair_links(net.state, lambda s, d: net.backend.link_address(net.state, s, d))
    assert len(links) == 6 * 5
    link = next(x for x in links if (x.src.name, x.dst.name) == ("sn01", "sn02"))
    assert [p["name"] for p in link.proxies()] == ["sn01->sn02", "sn01->sn02-omq"]
    # on the link address, with sn02's advertised ports, forwarding to sn02's own proxies
    assert link.proxies()[0]["listen"] == "127.250.2.3:22021"
    assert link.proxies()[0]["upstream"] == "127.250.2.1:22021"
    assert link.proxies()[1] == {"name": "sn01->sn02-omq", "listen": "127.250.2.3:26002",
                                 "upstream": "127.250.2.1:26002", "enabled": True}
    assert link.udp_relay() == {"listen": "127.250.2.3:26002", "upstream": "127.250.2.2:27002"}
    for rec in net.state.nodes:
        rec.oxend_endpoint = f"tcp://127.0.0.1:{28000 + node_index(rec.name)}"
    path = write_node_list(net.state, tmp_path, lambda s, d: net.backend.link_address(net.state, s, d))
    assert path is not None
    sn01 = json.loads(path.read_text())["nodes"][0]
    assert sn01["peer_ips"] == {f"sn{i:02d}": f"127.250.{i}.3" for i in range(2, 7)}
    # backends that do not make pair links do not route pairs (and refuse link faults, below)
    net.state.backend = "other"
    assert pair_links(net.state, lambda s, d: "x") == []


def test_link_latency_goes_on_the_pair_link_and_its_reverse_omq_proxy(tp: FakeToxiproxy) -> None:  # noqa: F811
    net = real_net(tp)
    before = set(tp.proxies)
    with make_faults(net) as f:
        fault = f.latency("sn01", 300, link="sn02")
        assert sorted(fault.toxics) == [("sn01->sn02", "latency_downstream"),
                                        ("sn01->sn02-omq", "latency_downstream"),
                                        ("sn02->sn01-omq", "latency_upstream")]
        assert tp.proxies["sn02->sn01-omq"]["toxics"]["latency_upstream"]["stream"] == "upstream"
        assert not tp.proxies["sn02->sn01"]["toxics"]  # HTTPS is not shared between directions
        assert set(tp.proxies) == before and fault.created_links == []
        assert admin_writes(net) == []
        fault.remove()
    assert set(tp.proxies) == before, "pair links are never deleted"
    assert all(not p["toxics"] and p["enabled"] for p in tp.proxies.values())


def test_partition_disables_both_directions_and_heal_enables_them(tp: FakeToxiproxy) -> None:  # noqa: F811
    net = real_net(tp)
    before = set(tp.proxies)
    with make_faults(net) as f:
        f.partition("sn01", "sn02,sn03")
        off = sorted(n for n, p in tp.proxies.items() if not p["enabled"])
        assert off == sorted(f"{a}->{b}{s}" for a, b in [("sn01", "sn02"), ("sn02", "sn01"),
                                                          ("sn01", "sn03"), ("sn03", "sn01")]
                             for s in ("", "-omq"))
        assert admin_writes(net) == []
    with make_faults(net) as fresh:  # heal works from a fresh process
        fresh.heal()
    assert set(tp.proxies) == before
    assert all(p["enabled"] for p in tp.proxies.values())


def test_partition_undo_keeps_link_toxics_and_clear_resets_pair_links(tp: FakeToxiproxy) -> None:  # noqa: F811
    net = real_net(tp)
    with make_faults(net) as f:
        f.latency("sn01", 200, link="sn02")
        cut = f.partition("sn01", "sn02")
        cut.remove()
        assert tp.proxies["sn01->sn02"]["enabled"] and tp.proxies["sn01->sn02-omq"]["enabled"]
        assert "latency_downstream" in tp.proxies["sn01->sn02"]["toxics"]
        f.partition("sn03", "sn04")
        f.clear()
    assert all(p["enabled"] and not p["toxics"] for p in tp.proxies.values())
    assert len([n for n in tp.proxies if "->" in n]) == 2 * 6 * 5


def test_restarted_real_node_needs_no_admin_call(tp: FakeToxiproxy) -> None:  # noqa: F811
    net = real_net(tp)
    with make_faults(net) as f:
        f.partition("sn01", "sn02")
        f.restart("sn01")  # the seed's node list routes it again: nothing to re-point
        f.unpause("sn02")
    assert ("restart", "sn01") in net.calls and admin_writes(net) == []


def test_missing_pair_link_says_to_recreate_the_testnet(tp: FakeToxiproxy) -> None:  # noqa: F811
    net = real_net(tp)
    del tp.proxies["sn01->sn02-omq"]
    with make_faults(net) as f, pytest.raises(FaultError, match="sn01->sn02-omq.*recreate the testnet"):
        f.partition("sn01", "sn02")


def test_backend_without_pair_links_refuses_link_faults_on_real_nodes(tp: FakeToxiproxy) -> None:  # noqa: F811
    net = real_net(tp, backend="other")
    with make_faults(net) as f:
        with pytest.raises(ValueError, match="sn0.*only the docker, process backends set up .*not other"):
            f.partition("sn01", "sn02")
        with pytest.raises(ValueError, match="only the docker, process backends"):
            f.latency("sn01", 100, link="sn02")
        f.latency("sn01", 100)  # node-level faults still work there
    assert all(p["enabled"] for p in tp.proxies.values())


def test_block_clients_on_real_nodes_points_pair_links_past_the_blocked_proxies(
        tp: FakeToxiproxy) -> None:  # noqa: F811
    """Clients lose sn01 (both its proxies disabled) while its peers' pair links to it go
    straight to its process; no link proxy is made, no admin call; undo restores all."""
    net = real_net(tp)
    before = {name: dict(p) for name, p in tp.proxies.items()}
    sn01 = net.state.node("sn01")
    with make_faults(net) as f:
        block = f.block_clients("sn01")
        assert block.nodes == ["sn01"]
        assert not tp.proxies["sn01"]["enabled"] and not tp.proxies["sn01-omq"]["enabled"]
        for src in ("sn02", "sn03", "sn04", "sn05", "sn06"):
            assert tp.proxies[f"{src}->sn01"]["upstream"] == f"{sn01.bind_ip}:{sn01.storage_port}"
            assert tp.proxies[f"{src}->sn01-omq"]["upstream"] == f"{sn01.bind_ip}:{sn01.omq_bind_port}"
            assert tp.proxies[f"{src}->sn01"]["enabled"]
        # links between other nodes are untouched
        assert tp.proxies["sn02->sn03"] == before["sn02->sn03"]
        assert set(tp.proxies) == set(before)
        block.remove()
    assert {n: (p["upstream"], p["enabled"]) for n, p in tp.proxies.items()} == \
        {n: (p["upstream"], p["enabled"]) for n, p in before.items()}
    assert admin_writes(net) == []


def test_status_lists_pair_links_only_while_a_fault_acts_on_them(tp: FakeToxiproxy) -> None:  # noqa: F811
    net = real_net(tp)
    with make_faults(net) as f:
        assert f.status()["links"] == {}
        f.latency("sn01", 100, link="sn02")
        links = f.status()["links"]
        assert sorted(links) == ["sn01->sn02", "sn02->sn01"]  # the mirror on sn02->sn01-omq
        assert [t["name"] for t in links["sn01->sn02"]["omq"]["toxics"]] == ["latency_downstream"]
        assert links["sn02->sn01"]["toxics"] == [] and links["sn02->sn01"]["omq"]["toxics"]
        f.clear()
        assert f.status()["links"] == {}
