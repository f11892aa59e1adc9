"""harness.faults.schedule: generation from a seed, the file format, and deterministic replays
(run against the fake testnet and fake Toxiproxy of the other test_faults_* modules)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from test_faults_actions import FakeNet, make_faults
from test_faults_toxiproxy import FakeToxiproxy

from harness.faults import (
    DEFAULT_REGISTRY,
    RealClock,
    Schedule,
    ScheduleError,
    Step,
    Timeline,
    VirtualClock,
    run,
)

EXCLUSIVE = DEFAULT_REGISTRY.exclusive()

pytestmark = pytest.mark.unit

NODES = [f"sn{i:02d}" for i in range(1, 7)]


def fresh_world() -> tuple[FakeToxiproxy, FakeNet]:
    tp = FakeToxiproxy()
    net = FakeNet(tp.url)
    for rec in net.state.nodes:
        tp.proxies[rec.name] = {"name": rec.name, "listen": f"{rec.public_ip}:22021",
                                "upstream": f"{rec.bind_ip}:22021", "enabled": True, "toxics": {}}
    return tp, net


def test_generate_is_a_function_of_the_seed():
    a = Schedule.generate("42", 120, nodes=NODES)
    b = Schedule.generate("42", 120, nodes=list(reversed(NODES)))
    c = Schedule.generate("43", 120, nodes=NODES)
    assert a.to_json() == b.to_json()
    assert a.to_json() != c.to_json()
    assert len(a.steps) >= 20
    assert [s.at for s in a.steps] == sorted(s.at for s in a.steps)
    assert all(s.at + (s.duration or 0) <= 120 + 1e-9 for s in a.steps)
    assert {s.action for s in a.steps} >= {"latency", "kill"}
    assert a.seed == "42" and a.length <= 120


def test_generate_never_overlaps_exclusive_faults_beyond_max_down():
    s = Schedule.generate("7", 300, nodes=NODES, max_down=1)
    excl = [(x.at, x.at + (x.duration or 0)) for x in s.steps
            if x.action in EXCLUSIVE or x.action == "partition"]
    assert excl
    for (a0, a1), (b0, b1) in zip(excl, excl[1:], strict=False):
        assert b0 >= a1, f"exclusive faults overlap: {(a0, a1)} and {(b0, b1)}"
    s2 = Schedule.generate("7", 300, nodes=NODES, max_down=2)
    assert len([x for x in s2.steps if x.action in EXCLUSIVE]) >= len(
        [x for x in s.steps if x.action in EXCLUSIVE])


def test_generate_with_roles_and_mix():
    s = Schedule.generate("r", 60, roles=["random:1", "swarm:0x64:1"], mix={"latency": 1,
                                                                           "pause": 1})
    assert {x.action for x in s.steps} <= {"latency", "pause"}
    assert {str(x.target) for x in s.steps} <= {"random:1", "swarm:0x64:1"}
    with pytest.raises(ScheduleError):
        Schedule.generate("r", 60, mix={"up": 1})
    with pytest.raises(ScheduleError):
        Schedule.generate("r", 60, mix={"latency": 0})
    with pytest.raises(ScheduleError):
        Schedule.generate("r", 60, nodes=NODES, roles=["all"])


def test_file_round_trip_and_bare_list(tmp_path: Path):
    s = Schedule.generate("file", 60, nodes=NODES)
    path = s.save(tmp_path / "s.json")
    back = Schedule.load(path)
    assert back.to_json() == s.to_json()
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([{"at": 0, "action": "latency", "target": "sn01",
                                 "params": {"ms": 100}, "duration": 5},
                                {"at": 1, "action": "partition", "target": ["sn01", "sn02"],
                                 "params": {"from": "sn03"}, "duration": 2},
                                {"at": 4, "action": "heal"}]))
    b = Schedule.load(bare)
    assert b.name == "bare" and b.seed == "0"
    assert str(b.steps[1].target) == "sn01,sn02" and b.length == 5


@pytest.mark.parametrize("step,match", [
    ({"at": 0, "action": "explode", "target": "sn01"}, "unknown fault action"),
    ({"at": -1, "action": "kill", "target": "sn01"}, "'at'"),
    ({"at": 0, "action": "kill"}, "needs a target"),
    ({"at": 0, "action": "heal", "target": "sn01"}, "takes no target"),
    ({"at": 0, "action": "restart", "target": "sn01", "duration": 3}, "cannot be undone"),
    ({"at": 0, "action": "latency", "target": "sn01"}, "needs parameter"),
    ({"at": 0, "action": "latency", "target": "sn01", "params": {"ms": 1, "x": 2}}, "no param"),
    ({"at": 0, "action": "misbehave", "target": "sn01", "params": {"fly": True}}, "misbehave"),
    ({"at": 0, "action": "kill", "target": "random:zero"}, "not a node count"),
    ({"at": 0, "action": "kill", "target": "sn01", "when": 3}, "unknown field"),
    ({"at": 0, "action": "kill", "target": "sn01", "duration": 0}, "duration"),
])
def test_invalid_steps_name_the_problem(step: dict, match: str):
    with pytest.raises(ScheduleError, match=match):
        Schedule.from_json({"steps": [step]})


def test_bad_files(tmp_path: Path):
    with pytest.raises(ScheduleError, match="does not exist"):
        Schedule.load(tmp_path / "nope.json")
    p = tmp_path / "x.json"
    p.write_text("{")
    with pytest.raises(ScheduleError, match="not valid JSON"):
        Schedule.load(p)
    p.write_text(json.dumps({"version": 9, "steps": []}))
    with pytest.raises(ScheduleError, match="version"):
        Schedule.load(p)


def test_agenda_orders_removals_before_applications():
    s = Schedule([Step(0, "kill", "sn01", duration=5), Step(5, "kill", "sn02", duration=5),
                  Step(5, "latency", "sn03", {"ms": 1})])
    assert s.agenda() == [(0.0, "apply", 0), (5.0, "remove", 0), (5.0, "apply", 1),
                          (5.0, "apply", 2), (10.0, "remove", 1)]


def test_churn_keeps_a_member_of_every_swarm():
    swarms = {1: ["sn01", "sn02", "sn03"], 2: ["sn04", "sn05", "sn06"]}
    s = Schedule.churn("c", 30, 5, nodes=NODES, count=4, swarms=swarms)
    assert [x.at for x in s.steps] == [0, 5, 10, 15, 20, 25]
    for x in s.steps:
        out = list(x.target.names)
        assert len(out) == 4 and x.duration == 5 and x.action == "kill"
        for members in swarms.values():
            assert len(set(members) - set(out)) >= 1
    assert s.to_json() == Schedule.churn("c", 30, 5, nodes=NODES, count=4,
                                         swarms=swarms).to_json()
    with pytest.raises(ScheduleError, match="one member"):
        Schedule.churn("c", 30, 5, nodes=NODES, count=5, swarms=swarms)
    with pytest.raises(ScheduleError):
        Schedule.churn("c", 30, 5, nodes=NODES, action="latency")


def replay(schedule: Schedule) -> tuple[list[dict], FakeNet]:
    tp, net = fresh_world()
    try:
        faults = make_faults(net, timeline=Timeline())
        result = run(schedule, faults, VirtualClock())
        assert result.ok, result.errors
        return faults.timeline.resolved(), net
    finally:
        tp.close()


def test_same_seed_replays_the_same_resolved_sequence():
    roles = ["random:1", "random:2", "swarm:0x64:1"]
    mix = {"latency": 3, "bandwidth": 1, "kill": 2, "pause": 1, "down": 1, "partition": 1,
           "skew_clock": 1}
    gen = [Schedule.generate("replay", 90, roles=roles, mix=mix, max_down=2) for _ in range(2)]
    assert gen[0].to_json() == gen[1].to_json()
    first, net1 = replay(gen[0])
    second, net2 = replay(gen[1])
    assert first == second
    assert net1.calls == net2.calls and net1.calls
    applied = [e for e in first if e["phase"] == "apply"]
    assert len(applied) == len(gen[0].steps)
    assert len([e for e in first if e["phase"] == "remove"]) == len(
        [s for s in gen[0].steps if s.duration])
    other, _ = replay(Schedule.generate("other", 90, roles=roles, mix=mix, max_down=2))
    assert other != first


def test_exclusive_random_steps_never_pick_a_node_already_out():
    steps = [Step(i * 0.1, "kill", "random:1", duration=10) for i in range(6)]
    resolved, net = replay(Schedule(steps, seed="ex"))
    killed = [e["nodes"][0] for e in resolved if e["phase"] == "apply"]
    assert sorted(killed) == NODES  # six overlapping kills hit six different nodes
    assert [c for c in net.calls if c[0] == "start"] == [("start", n) for n in killed]


def test_real_clock_applies_at_offsets_and_removes_when_due():
    tp, net = fresh_world()
    try:
        faults = make_faults(net)
        s = Schedule([Step(0.0, "latency", "sn01", {"ms": 5}, duration=0.25),
                      Step(0.4, "down", "sn02", duration=0.1)])
        t0 = time.monotonic()
        result = run(s, faults, RealClock())
        elapsed = time.monotonic() - t0
        assert result.ok
        offs = [(e.action, e.phase, e.offset) for e in faults.timeline]
        assert [o[:2] for o in offs] == [("latency", "apply"), ("latency", "remove"),
                                         ("down", "apply"), ("down", "remove")]
        assert offs[1][2] == pytest.approx(0.25, abs=0.15)
        assert offs[2][2] == pytest.approx(0.4, abs=0.15)
        assert 0.5 <= elapsed < 1.5
        assert tp.proxies["sn01"]["toxics"] == {} and tp.proxies["sn02"]["enabled"]
    finally:
        tp.close()


def test_errors_are_recorded_and_the_run_goes_on():
    tp, net = fresh_world()
    try:
        faults = make_faults(net)
        net.fail_admin.add("sn03")
        s = Schedule([Step(0, "skew_clock", "sn03", {"offset_ms": 1000}, duration=1),
                      Step(0.5, "latency", "sn04", {"ms": 5}, duration=1),
                      Step(1, "kill", "sn99")])
        result = run(s, faults, VirtualClock())
        assert len(result.errors) == 2 and "step 0" in result.errors[0]
        assert "sn99" in result.errors[1]
        phases = [(e.action, e.phase, e.ok) for e in faults.timeline]
        assert phases == [("skew_clock", "apply", False), ("latency", "apply", True),
                          ("kill", "apply", False), ("latency", "remove", True)]
        stop = run(s, make_faults(net), VirtualClock(), stop_on_error=True)
        assert stop.interrupted and len(stop.errors) == 1
    finally:
        tp.close()


def test_interrupt_removes_the_timed_faults_in_force():
    tp, net = fresh_world()
    try:
        faults = make_faults(net)
        clock = RealClock()
        s = Schedule([Step(0, "latency", "sn01", {"ms": 5}, duration=30),
                      Step(0, "kill", "sn02", duration=30), Step(20, "kill", "sn03")])
        threading.Timer(0.3, clock.stop).start()
        t0 = time.monotonic()
        result = run(s, faults, clock)
        assert time.monotonic() - t0 < 5
        assert result.interrupted
        assert tp.proxies["sn01"]["toxics"] == {}
        assert net.calls == [("kill", "sn02"), ("start", "sn02")]
    finally:
        tp.close()
