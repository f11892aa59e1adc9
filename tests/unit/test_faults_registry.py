"""harness.faults.families: the registry of fault kinds — parameters, seeded generation, apply and
undo of every family, impossible targets, and the docs' example of a new family."""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_faults_actions import FakeNet, make_faults
from test_faults_toxiproxy import FakeToxiproxy

from harness.faults import (
    DEFAULT_MIX,
    DEFAULT_REGISTRY,
    FaultError,
    FaultKind,
    ParamError,
    Registry,
    Schedule,
    ScheduleError,
    Step,
    Target,
    TargetError,
    Timeline,
    UnknownAction,
    VirtualClock,
    run,
)
from harness.faults.families.base import Param

pytestmark = pytest.mark.unit

KINDS = list(DEFAULT_REGISTRY)
#: (stop_seed acts on the seed, not on nodes: tests/unit/test_faults_seed.py)
REVERSIBLE = [k for k in KINDS if k.reversible and k.action != "stop_seed"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "faults.md"

#: a valid value of each parameter type, and one of the wrong type
GOOD = {int: 3, float: 1.5, bool: True, str: None, Target: "sn02"}
BAD = {int: "3", float: "x", bool: 1, str: 5, Target: 5}


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


def world(net: FakeNet, tp: FakeToxiproxy) -> dict[str, Any]:
    """Everything a fault can change in the fake testnet."""
    return {"toxiproxy": copy.deepcopy(tp.proxies), "admin": copy.deepcopy(net.admin),
            "stopped": sorted(net.backend.stopped), "decommissioned": sorted(net.decommissioned),
            "paused": sorted(n.name for n in net.state.nodes if n.runtime.get("paused"))}


def valid_params(kind: FaultKind) -> dict[str, Any]:
    if kind.generatable and kind.action != "add_nodes":
        return kind.generate(random.Random(f"params/{kind.action}"))
    return {p.name: (p.choices[0] if p.choices else GOOD[p.type]) for p in kind.params
            if p.required}


# -- the registry ---------------------------------------------------------------------------------

def test_the_built_in_families_and_their_actions():
    assert {f: [k.action for k in ks] for f, ks in DEFAULT_REGISTRY.families().items()} == {
        "toxics": ["latency", "bandwidth", "timeout", "reset", "slow_close", "slicer",
                   "limit_data", "wan"],
        "links": ["down", "up", "partition", "heal"],
        "firewall": ["block_clients"],
        "clock": ["skew_clock"],
        "behaviours": ["misbehave"],
        "churn": ["kill", "stop", "start", "restart", "pause", "unpause", "decommission",
                  "recommission", "add_nodes", "stop_seed"],
        "maintenance": ["clear"],
    }
    assert DEFAULT_REGISTRY.exclusive() == {"kill", "stop", "pause", "decommission", "down"}
    assert dict(DEFAULT_MIX) == {"latency": 4, "bandwidth": 1, "timeout": 1, "reset": 1,
                                 "down": 2, "partition": 1, "skew_clock": 1, "kill": 2,
                                 "pause": 1}
    assert {k.action for k in REVERSIBLE} == {
        "latency", "bandwidth", "timeout", "reset", "slow_close", "slicer", "limit_data", "wan",
        "down", "partition", "block_clients", "skew_clock", "misbehave", "kill", "stop", "pause", "decommission"}


def test_unknown_action_is_an_error_everywhere(net: FakeNet):
    with pytest.raises(UnknownAction, match="unknown fault action 'explode'; known: latency"):
        DEFAULT_REGISTRY.get("explode")
    with pytest.raises(ValueError, match="unknown fault action 'explode'"):
        make_faults(net).apply("explode", "sn01")
    with pytest.raises(ScheduleError, match="step 0: unknown fault action 'explode'"):
        Schedule.from_json([{"at": 0, "action": "explode", "target": "sn01"}])
    with pytest.raises(ScheduleError, match="mix: unknown fault action 'explode'"):
        Schedule.generate("s", 10, mix={"explode": 1})
    assert net.calls == []


def test_registries_refuse_duplicates_and_compose():
    with pytest.raises(ValueError, match="two fault kinds named 'latency'"):
        DEFAULT_REGISTRY.with_kinds(DEFAULT_REGISTRY.get("latency"))

    class Skew2(FaultKind):
        action, family, cli_verb = "skew2", "clock", "skew"

    with pytest.raises(ValueError, match="CLI verb 'fault skew'"):
        DEFAULT_REGISTRY.with_kinds(Skew2())
    with pytest.raises(ValueError, match="needs an action and a family"):
        Registry([FaultKind()])
    assert "skew2" not in DEFAULT_REGISTRY  # with_kinds makes a new registry


# -- parameters -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.action)
def test_every_kind_checks_its_parameters(kind: FaultKind):
    good = valid_params(kind)
    parsed = kind.parse(good)
    assert kind.parse(parsed) == parsed  # idempotent: parsed once, passed on typed
    complete = kind.complete(parsed)
    assert {p.name for p in kind.params if p.default is not None} <= set(complete)
    with pytest.raises(ParamError, match=f"action '{kind.action}' has no parameter"):
        kind.parse({**good, "colour": "red"})
    for p in kind.params:
        if p.required:
            with pytest.raises(ParamError, match=f"needs parameter.*{p.name}"):
                kind.parse({k: v for k, v in good.items() if k != p.name})
        with pytest.raises(ParamError, match=p.name):
            kind.parse({**good, p.name: BAD[p.type]})
        if p.minimum is not None:
            with pytest.raises(ParamError, match=f"{p.name} must be >= "):
                kind.parse({**good, p.name: int(p.minimum) - 1})
        if p.choices:
            with pytest.raises(ParamError, match="must be one of"):
                kind.parse({**good, p.name: "sideways"})


def test_cross_parameter_checks_and_target_parameters():
    misbehave = DEFAULT_REGISTRY.get("misbehave")
    with pytest.raises(ParamError, match="at least one behaviour"):
        misbehave.parse({})
    with pytest.raises(ParamError, match="average_size must be >= 1"):
        DEFAULT_REGISTRY.get("slicer").parse({"average_size": 0})
    parsed = DEFAULT_REGISTRY.get("latency").parse({"ms": 5, "link": "random:2"})
    assert parsed["link"] == Target("random", count=2)
    with pytest.raises(ParamError, match="parameter link.*not a node count"):
        DEFAULT_REGISTRY.get("latency").parse({"ms": 5, "link": "random:x"})
    with pytest.raises(ParamError, match="parameter from"):
        DEFAULT_REGISTRY.get("partition").parse({"from": "bogus:1"})
    assert Param("ms", int).check("x", 0) == 0
    with pytest.raises(ParamError, match="must be an integer"):
        Param("ms", int).check("x", True)  # a bool is not a number of milliseconds


# -- generation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [k for k in KINDS if k.generatable], ids=lambda k: k.action)
def test_generated_parameters_are_valid_and_a_function_of_the_seed(kind: FaultKind):
    draws = []
    for i in range(12):
        random.seed(i)  # the global RNG must not matter
        draws.append(kind.generate(random.Random(f"seed/{i % 4}")))
    assert draws[:4] == draws[4:8] == draws[8:]
    for d in draws:
        kind.parse(d)


def test_generated_parameters_vary_and_are_pinned():
    latency = DEFAULT_REGISTRY.get("latency")
    assert len({tuple(sorted(latency.generate(random.Random(i)).items())) for i in range(20)}) > 5
    # the draws of a kind are part of the schedule format: same seed, same schedule, forever
    assert latency.generate(random.Random("pin")) == {"ms": 150, "jitter": 60}
    assert DEFAULT_REGISTRY.get("misbehave").generate(random.Random("pin")) == {"delay_ms": 200}
    assert DEFAULT_REGISTRY.get("skew_clock").generate(random.Random("pin")) == {
        "offset_ms": -600000}


def test_mix_must_name_generatable_kinds():
    for action in ("up", "start", "unpause", "recommission", "heal", "clear"):
        with pytest.raises(ScheduleError, match="cannot be generated"):
            Schedule.generate("s", 10, mix={action: 1})


# -- targets --------------------------------------------------------------------------------------

def test_impossible_targets_are_errors_and_hit_nothing(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net, timeline=Timeline())
    with pytest.raises(TargetError, match="random:9: asks for 9 nodes but the testnet has 6"):
        f.kill("random:9")
    with pytest.raises(TargetError, match="asks for 4 members but the swarm has 3"):
        f.latency("swarm:100:4", 10)
    with pytest.raises(TargetError, match="no node 'sn42'"):
        f.down("sn01,sn42")
    assert net.calls == [] and all(not p["toxics"] and p["enabled"] for p in tp.proxies.values())
    assert [e.error is not None for e in f.timeline] == [True, True, True]
    assert f.resolve("random:6") == [f"sn{i:02d}" for i in range(1, 7)]  # the most possible


def test_impossible_targets_of_a_schedule_are_step_errors(net: FakeNet):
    s = Schedule([Step.of(0, "kill", "random:9", duration=1), Step.of(0.5, "kill", "random:1")])
    result = run(s, make_faults(net), VirtualClock())
    assert len(result.errors) == 1 and "step 0" in result.errors[0]
    assert "asks for 9 nodes" in result.errors[0]
    assert len(net.calls) == 1  # step 1 still ran


def test_targets_are_parsed_once_at_the_edge():
    s = Step.of(0, "latency", "random:2", {"ms": 5, "link": "sn01,sn02"}, duration=1)
    s.validate()
    assert s.target == Target("random", count=2)
    assert s.params["link"] == Target("nodes", names=("sn01", "sn02"))
    assert s.to_json() == {"at": 0, "action": "latency", "target": "random:2",
                           "params": {"ms": 5, "link": "sn01,sn02"}, "duration": 1}
    with pytest.raises(ScheduleError, match="not a node count"):
        Step.of(0, "kill", "random:none")


# -- apply and undo of every family ---------------------------------------------------------------

def target_for(kind: FaultKind) -> str | None:
    return None if kind.target == "none" else "sn02"


@pytest.mark.parametrize("kind", REVERSIBLE, ids=lambda k: k.action)
def test_every_reversible_kind_undoes_what_it_did(kind: FaultKind, net: FakeNet,
                                                  tp: FakeToxiproxy):
    f = make_faults(net, timeline=Timeline())
    before = world(net, tp)
    fault = f.apply(kind.action, target_for(kind), **valid_params(kind))
    assert fault.nodes and world(net, tp) != before, f"{kind.action} changed nothing"
    assert f.active == [fault]
    f.remove(fault)
    after = world(net, tp)
    if kind.action in ("kill", "stop"):
        # a node that died forgets its overrides; it had none here
        assert after["admin"] == before["admin"]
    assert after == before
    assert [(e.action, e.phase, e.ok) for e in f.timeline] == [(kind.action, "apply", True),
                                                                 (kind.action, "remove", True)]
    assert f.active == [] and f.remove(fault) is None


@pytest.mark.parametrize("kind", [k for k in KINDS if not k.reversible], ids=lambda k: k.action)
def test_one_shot_kinds_cannot_be_removed(kind: FaultKind, net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    if kind.action == "start":
        net.backend.stopped.add("sn02")  # so that it has something to do
    fault = f.apply(kind.action, target_for(kind), **valid_params(kind))
    assert fault.event is not None and fault.event.ok
    assert f.active == []
    with pytest.raises(FaultError, match="cannot be undone"):
        fault.remove()


def test_a_failed_apply_is_rolled_back_by_the_kinds_undo(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    net.fail_admin.add("sn03")
    with pytest.raises(FaultError, match="sn03"):
        f.skew_clock("sn02,sn03", 1000)  # sn02 first, then sn03 fails
    assert net.admin["sn02"]["clock"] == 0  # sn02's change was undone
    net.fail_churn.add("sn03")
    with pytest.raises(FaultError, match="kill on sn01: cannot kill sn03"):
        f.kill("sn01,sn03")
    assert net.calls == [("kill", "sn01"), ("start", "sn01")]  # sn01's kill was undone
    assert f.active == []


def test_clear_asks_node_side_kinds_to_reset(net: FakeNet, tp: FakeToxiproxy):
    f = make_faults(net)
    f.skew_clock("sn01", 5000)
    f.misbehave("sn01", drop_relays=True)
    f.latency("sn01", 100)
    make_faults(net).clear("sn01", node_side=False)
    assert net.admin["sn01"]["clock"] == 5000 and tp.proxies["sn01"]["toxics"] == {}
    f.clear("sn01")
    assert net.admin["sn01"]["clock"] == 0
    assert net.admin["sn01"]["behaviours"]["drop_relays"] is False
    assert f.active == []


# -- the docs' example of a new family ------------------------------------------------------------

def docs_example() -> dict[str, Any]:
    text = DOCS.read_text()
    m = re.search(r"<!-- example: new fault family[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert m, "docs/faults.md lost its example of a new fault family"
    namespace: dict[str, Any] = {"__name__": "faults_docs_example"}
    exec(compile(m.group(1), str(DOCS), "exec"), namespace)  # noqa: S102 (our own docs)
    return namespace


def test_the_documented_new_family_works_end_to_end(net: FakeNet, tp: FakeToxiproxy):
    from harness.faults.cli import kind_command

    stall = docs_example()["Stall"]()
    registry = DEFAULT_REGISTRY.with_kinds(stall)
    f = make_faults(net, registry=registry)
    fault = f.apply("stall", "sn02")
    assert {n: t["attributes"] for n, t in tp.proxies["sn02"]["toxics"].items()} == {
        "stall_upstream": {"timeout": 0}, "stall_downstream": {"timeout": 0}}
    fault.remove()
    assert tp.proxies["sn02"]["toxics"] == {}
    with pytest.raises(ParamError, match="must be one of"):
        f.apply("stall", "sn02", stream="sideways")
    # schedules: loaded, generated (weight 1 puts it in the default mix) and run
    s = Schedule.from_json([{"at": 0, "action": "stall", "target": "sn03", "duration": 1}],
                           registry=registry)
    assert run(s, f, VirtualClock()).ok and tp.proxies["sn03"]["toxics"] == {}
    gen = Schedule.generate("g", 120, nodes=[f"sn{i:02d}" for i in range(1, 7)],
                            registry=registry)
    assert "stall" in {x.action for x in gen.steps}
    with pytest.raises(ScheduleError, match="unknown fault action 'stall'"):
        Schedule.from_json(gen.to_json())  # the default registry does not know it
    # its CLI command: target argument, one option per Param, --duration (reversible)
    cmd = kind_command(stall)
    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert cmd.name == "stall" and {"--stream", "--duration", "--seed", "--json", "-n"} <= opts
