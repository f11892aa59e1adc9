"""harness.faults.wan: seeded WAN profiles (pure), applying one through Faults (recorded calls),
and the ``wan`` fault kind on the fake testnet and Toxiproxy of the fault unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.faults import DEFAULT_REGISTRY, Faults, NetworkView, Timeline
from harness.faults.families.wan import Wan
from harness.faults.wan import (
    DEFAULT_REGIONS,
    LATENCY_SPREAD,
    WAN_TAG,
    NodeLink,
    Region,
    WanProfile,
    apply_wan,
    profile_from_json,
    wan_profile,
)

pytestmark = pytest.mark.unit

NODES = [f"sn{i:02d}" for i in range(1, 10)]


def test_same_seed_same_profile_whatever_the_order() -> None:
    a = wan_profile("42", NODES)
    b = wan_profile("42", list(reversed(NODES)))
    assert a == b
    assert a.nodes == sorted(NODES)
    assert wan_profile(42, NODES) == wan_profile("42", NODES)


def test_other_seed_other_profile() -> None:
    profiles = {wan_profile(str(s), NODES).links for s in range(10)}
    assert len(profiles) == 10


def test_values_come_from_the_regions() -> None:
    regions = {r.name: r for r in DEFAULT_REGIONS}
    for seed in range(20):
        for link in wan_profile(seed, NODES).links:
            r = regions[link.region]
            assert link.jitter_ms == r.jitter_ms and link.kbps == r.kbps
            lo, hi = LATENCY_SPREAD
            assert r.latency_ms * lo - 1 <= link.latency_ms <= r.latency_ms * hi + 1
            assert link.latency_ms >= link.jitter_ms


def test_regions_are_drawn_by_weight() -> None:
    heavy = Region("heavy", 10, 1, 100, weight=9)
    light = Region("light", 50, 5, 10, weight=1)
    counts = {"heavy": 0, "light": 0}
    for seed in range(50):
        for link in wan_profile(seed, NODES, regions=(heavy, light)).links:
            counts[link.region] += 1
    assert counts["heavy"] > 3 * counts["light"] > 0


def test_adding_a_node_is_deterministic_too() -> None:
    assert wan_profile("s", [*NODES, "sn10"]) == wan_profile("s", ["sn10", *NODES])


def test_bounds() -> None:
    p = WanProfile("x", (NodeLink("a", "r", 100, 10, 100), NodeLink("b", "r", 20, 5, 1000),
                         NodeLink("c", "r", 50, 0, 10)))
    assert p.slowest_route_ms(1) == 110
    assert p.slowest_route_ms(2) == 160
    assert p.slowest_route_ms(5) == 185  # every node at most once
    assert p.slowest_route_ms(0) == 0
    # 10 kB through c's 10 KB/s cap: one second more
    assert p.slowest_route_ms(1, payload_bytes=10_000) == 1050
    assert p.least_route_ms(["a", "b", "zz"]) == 90 + 15
    # a hop may cross either end's proxy: the guard fully, then the smaller end of each hop
    assert p.least_route_ms(["b", "a", "c"], either_end=True) == 15 + 15 + 50
    assert p.least_route_ms(["a", "c", "zz"], either_end=True) == 90 + 50 + 0
    assert p["b"].kbps == 1000
    assert p.regions() == {"r": ["a", "b", "c"]}
    with pytest.raises(KeyError, match="not in the WAN profile"):
        p["zz"]
    with pytest.raises(ValueError):
        p.slowest_route_ms(-1)


def test_json_round_trip_and_description() -> None:
    p = wan_profile("7", NODES)
    assert profile_from_json(p.to_json()) == p
    lines = p.describe().splitlines()
    assert len(lines) == len(NODES) and lines[0].startswith("sn01 ")


@pytest.mark.parametrize("kw", [dict(latency_ms=-1), dict(jitter_ms=50), dict(kbps=0),
                                dict(weight=0), dict(name="")])
def test_bad_regions(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = dict(name="r", latency_ms=10, jitter_ms=1, kbps=10, weight=1) | kw
    with pytest.raises(ValueError):
        Region(**args)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        wan_profile("s", [])
    with pytest.raises(ValueError, match="at least one region"):
        wan_profile("s", NODES, regions=())
    r = Region("r", 10, 1, 10)
    with pytest.raises(ValueError, match="twice"):
        wan_profile("s", NODES, regions=(r, r))


class RecordingFaults:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def latency(self, node: str, ms: int, jitter: int = 0, **opts: Any) -> str:
        self.calls.append(("latency", node, ms, jitter, opts))
        return f"latency {node}"

    def bandwidth(self, node: str, kbps: int, **opts: Any) -> str:
        self.calls.append(("bandwidth", node, kbps, opts))
        return f"bandwidth {node}"


def test_apply_puts_every_node_link_on_its_node() -> None:
    p = wan_profile("3", NODES[:3])
    f = RecordingFaults()
    applied = apply_wan(f, p)  # type: ignore[arg-type]
    assert len(applied) == 6
    for link in p.links:
        assert ("latency", link.node, link.latency_ms, link.jitter_ms, {"tag": WAN_TAG}) in f.calls
        assert ("bandwidth", link.node, link.kbps, {"stream": "both", "tag": WAN_TAG}) in f.calls
    f2 = RecordingFaults()
    assert len(apply_wan(f2, p, bandwidth=False)) == 3  # type: ignore[arg-type]
    assert {c[0] for c in f2.calls} == {"latency"}


# -- the ``wan`` fault kind (schedules, CLI) against the fake testnet of test_faults_actions ----

@pytest.fixture
def fake() -> Iterator[tuple[Any, Any]]:
    from test_faults_actions import FakeNet
    from test_faults_toxiproxy import FakeToxiproxy

    tp = FakeToxiproxy()
    try:
        net = FakeNet(tp.url, seed="wan-unit")
        for rec in net.state.nodes:
            tp.proxies[rec.name] = {"name": rec.name, "listen": f"{rec.public_ip}:22021",
                                    "upstream": f"{rec.bind_ip}:22021", "enabled": True,
                                    "toxics": {}}
        yield net, tp
    finally:
        tp.close()


def _faults(net: Any) -> Faults:
    return Faults(net, view=lambda: NetworkView.from_state(net.state),
                  registry=DEFAULT_REGISTRY)


def test_wan_kind_puts_the_testnet_seed_profile_on_every_node(fake: tuple[Any, Any]) -> None:
    net, tp = fake
    tl = Timeline()
    faults = Faults(net, tl, view=lambda: NetworkView.from_state(net.state),
                    registry=DEFAULT_REGISTRY)
    fault = faults.apply("wan")
    profile = wan_profile("wan-unit", [n.name for n in net.nodes])
    assert fault.nodes == profile.nodes and fault.result == profile.to_json()
    for link in profile.links:
        toxics = tp.proxies[link.node]["toxics"]
        assert toxics["latency_downstream_wan"]["attributes"] == {"latency": link.latency_ms,
                                                                  "jitter": link.jitter_ms}
        assert toxics["bandwidth_upstream_wan"]["attributes"] == {"rate": link.kbps}
        assert toxics["bandwidth_downstream_wan"]["attributes"] == {"rate": link.kbps}
    assert [(e.action, e.phase) for e in tl] == [("wan", "apply")]
    fault.remove()
    assert all(not p["toxics"] for p in tp.proxies.values())


def test_wan_kind_seed_and_no_bandwidth(fake: tuple[Any, Any]) -> None:
    net, tp = fake
    faults = _faults(net)
    faults.apply("wan", seed="other", bandwidth=False)
    profile = wan_profile("other", [n.name for n in net.nodes])
    for link in profile.links:
        toxics = tp.proxies[link.node]["toxics"]
        assert list(toxics) == ["latency_downstream_wan"]
        assert toxics["latency_downstream_wan"]["attributes"]["latency"] == link.latency_ms
    # the same toxics as apply_wan: applying the one after the other replaces, not stacks
    apply_wan(faults, profile, bandwidth=False)
    assert all(len(p["toxics"]) == 1 for p in tp.proxies.values())
    faults.remove_all()
    assert all(not p["toxics"] for p in tp.proxies.values())


def test_wan_kind_cli_command() -> None:
    from click.testing import CliRunner

    from harness.faults.cli import kind_command

    out = CliRunner().invoke(kind_command(Wan()), ["--help"]).output
    assert "Usage: wan [OPTIONS]" in out
    for opt in ("--seed", "--no-bandwidth", "--duration", "--json", "--name"):
        assert opt in out
