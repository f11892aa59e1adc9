"""harness.faults.targets: parsing, string forms and deterministic resolution."""

from __future__ import annotations

import random

import pytest

from harness.faults.targets import NetworkView, NodeInfo, Target, TargetError
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.swarm import UNASSIGNED_SWARM, swarm_for, swarm_space

pytestmark = pytest.mark.unit

SWARM_A, SWARM_B = 0x1000_0000_0000_0000, 0x9000_0000_0000_0000


def view() -> NetworkView:
    nodes = []
    for i in range(1, 9):
        swarm = SWARM_A if i <= 4 else SWARM_B
        active = i != 8
        nodes.append(NodeInfo(f"sn{i:02d}", f"{i:02x}" * 32, swarm if active else None, active))
    # given out of order on purpose: the view sorts by name
    return NetworkView(tuple(reversed(nodes)))


@pytest.mark.parametrize("spec,kind,canonical", [
    ("sn01,sn02", "nodes", "sn01,sn02"),
    (" sn03 ", "nodes", "sn03"),
    ("all", "all", "all"),
    ("ALL", "all", "all"),
    ("random:2", "random", "random:2"),
    ("random:30%", "random", "random:30%"),
    ("random:12.5%", "random", "random:12.5%"),
    ("swarm:0x1000000000000000", "swarm", "swarm:0x1000000000000000"),
    ("swarm:4096:2", "swarm", "swarm:0x1000:2"),
    ("swarm-of:05" + "ab" * 32, "swarm_of", "swarm-of:05" + "ab" * 32),
    ("swarm-of:05" + "AB" * 32 + ":2", "swarm_of", "swarm-of:05" + "ab" * 32 + ":2"),
    ("guard", "guard", "guard"),
])
def test_parse_and_canonical_form(spec: str, kind: str, canonical: str):
    t = Target.parse(spec)
    assert t.kind == kind
    assert str(t) == canonical
    assert Target.parse(str(t)) == t


@pytest.mark.parametrize("spec", ["", "random:0", "random:x", "random:0%", "random:150%",
                                  "swarm:zz", "swarm-of:05ab", "swarm-of:", "bogus:1",
                                  "swarm:0x1:0"])
def test_invalid_specs_are_rejected(spec: str):
    with pytest.raises(TargetError):
        Target.parse(spec)


def test_list_and_target_inputs():
    assert Target.parse(["sn02", "sn01"]).names == ("sn02", "sn01")
    t = Target("all")
    assert Target.parse(t) is t


def test_explicit_names_and_keys_resolve_sorted_and_validated():
    v = view()
    assert Target.parse("sn03,sn01,sn03").resolve(v) == ["sn01", "sn03"]
    assert Target.parse("02" * 32).resolve(v) == ["sn02"]
    with pytest.raises(TargetError, match="no node 'sn42'"):
        Target.parse("sn42").resolve(v)
    assert Target.parse("all").resolve(v) == [f"sn{i:02d}" for i in range(1, 9)]


def test_random_is_deterministic_per_seed_and_honours_exclude():
    v = view()
    t = Target.parse("random:3")
    a = t.resolve(v, random.Random("s/1"))
    assert a == t.resolve(v, random.Random("s/1"))
    assert a == sorted(a) and len(a) == 3
    draws = {tuple(t.resolve(v, random.Random(f"s/{i}"))) for i in range(20)}
    assert len(draws) > 1
    picked = Target.parse("random:8").resolve(v, random.Random(1), exclude=["sn01", "sn02"])
    assert picked == [f"sn{i:02d}" for i in range(3, 9)]  # clamped to the candidates
    assert len(Target.parse("random:25%").resolve(v, random.Random(1))) == 2
    assert len(Target.parse("random:1%").resolve(v, random.Random(1))) == 1
    with pytest.raises(TargetError, match="seeded"):
        t.resolve(v)
    with pytest.raises(TargetError, match="no candidate"):
        Target.parse("random:1").resolve(v, random.Random(1), exclude=v.names)


def test_swarm_targets_use_active_members():
    v = view()
    assert Target.parse(f"swarm:{SWARM_B:#x}").resolve(v) == ["sn05", "sn06", "sn07"]
    two = Target.parse(f"swarm:{SWARM_A:#x}:2").resolve(v, random.Random(3))
    assert len(two) == 2 and set(two) <= {"sn01", "sn02", "sn03", "sn04"}
    with pytest.raises(TargetError, match="no active swarm"):
        Target.parse("swarm:0x5").resolve(v)
    assert UNASSIGNED_SWARM not in v.swarms()


def test_swarm_of_an_account_matches_swarm_for():
    v = view()
    for i in range(6):
        sid_hex = Identity.from_seed(derive_seed("t", "account", str(i))).session_id
        owner = swarm_for(swarm_space(sid_hex), [SWARM_A, SWARM_B])
        members = Target.parse(f"swarm-of:{sid_hex}").resolve(v)
        assert members == v.swarms()[owner]
        one = Target.parse(f"swarm-of:{sid_hex}:1").resolve(v, random.Random(i))
        assert len(one) == 1 and one[0] in members


def test_guard_needs_a_provider_and_accepts_names_or_keys():
    v = view()
    with pytest.raises(TargetError, match="guard provider"):
        Target.parse("guard").resolve(v)
    assert Target.parse("guard").resolve(v, guard_provider=lambda: "06" * 32) == ["sn06"]
    assert Target.parse("guard").resolve(v, guard_provider=lambda: "sn02") == ["sn02"]
    with pytest.raises(TargetError, match="no onion path"):
        Target.parse("guard").resolve(v, guard_provider=lambda: "")


def test_no_swarms_known_is_an_error():
    v = NetworkView((NodeInfo("sn01", "01" * 32, None, False),))
    with pytest.raises(TargetError, match="no swarms"):
        Target.parse("swarm-of:05" + "ab" * 32).resolve(v)
