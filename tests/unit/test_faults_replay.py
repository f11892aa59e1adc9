"""harness.faults.replay: the schedule a run applied, read back off its timeline, and replayed
(on the fake testnet and fake Toxiproxy of the other test_faults_* modules)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_faults_actions import make_faults
from test_faults_schedule import fresh_world

from harness.checks.synth import T0, event
from harness.faults import Schedule, Timeline, VirtualClock, run
from harness.faults.replay import run_file_events, steps_from_events
from harness.faults.step import ScheduleError
from harness.faults.timeline import Event

pytestmark = pytest.mark.unit


def synthetic_timeline() -> list[Event]:
    return [
        event("latency", "apply", ["sn04"], T0 + 2, 0, ms=200, jitter=0),
        event("kill", "apply", ["sn02"], T0 + 3.5, 1),
        event("latency", "remove", ["sn04"], T0 + 7, 2, ms=200, jitter=0),
        event("kill", "remove", ["sn02"], T0 + 9, 3),
        event("misbehave", "apply", ["sn01", "sn03"], T0 + 10, 4, drop_stores=True),
        Event("pause", "apply", ["sn05"], target="sn05", error="boom", wall=T0 + 11, seq=5),
    ]


def as_set(steps: list) -> set[tuple]:
    return {(s.action, str(s.target), json.dumps(s.to_json().get("params", {}), sort_keys=True),
             s.at, s.duration) for s in steps}


def test_timeline_to_schedule_keeps_action_nodes_params_times_and_durations():
    s = Schedule.from_timeline(synthetic_timeline(), seed="7")
    assert s.seed == "7"
    assert as_set(s.steps) == {
        ("latency", "sn04", json.dumps({"jitter": 0, "ms": 200}), 0.0, 5.0),
        ("kill", "sn02", "{}", 1.5, 5.5),
        ("misbehave", "sn01,sn03", json.dumps({"drop_stores": True}), 8.0, None),
    }  # the failed pause applied nothing: not replayed
    again = Schedule.from_json(json.loads(s.dumps()))
    assert [x.to_json() for x in again.steps] == [x.to_json() for x in s.steps]


def test_no_fault_no_step():
    assert steps_from_events([]) == []
    assert steps_from_events([Event("kill", "apply", ["sn01"], error="x")]) == []


def _timed(schedule: Schedule, events: list[Event]) -> list[Event]:
    """Give the events of a VirtualClock run the wall times the agenda ran them at."""
    times = [t for t, _, _ in schedule.agenda()]
    assert len(times) == len(events)
    for t, ev in zip(times, events, strict=True):
        ev.wall = T0 + t
    return events


def _run(schedule: Schedule) -> list[Event]:
    tp, net = fresh_world()
    try:
        result = run(schedule, make_faults(net, timeline=Timeline()), VirtualClock())
        assert result.ok, result.errors
        return list(result.events)
    finally:
        tp.close()


def test_replayed_schedule_applies_the_same_faults_to_the_same_nodes():
    roles = ["random:1", "random:2"]
    mix = {"latency": 3, "kill": 2, "pause": 1, "down": 1, "partition": 2}
    original = Schedule.generate("from-report", 60, roles=roles, mix=mix, max_down=2)
    first = _timed(original, _run(original))
    replay = Schedule.from_timeline(first, seed=original.seed)
    assert len(replay.steps) == len(original.steps)
    assert all(s.target is None or s.target.kind == "nodes" for s in replay.steps)
    second = _run(replay)

    def what(evs: list[Event]) -> list[tuple]:
        return sorted((e.action, e.phase, tuple(e.nodes), tuple(sorted(e.links)))
                      for e in evs)
    assert what(second) == what(first)
    assert {e.action for e in first} >= {"partition", "latency"}  # both kinds exercised


def test_cli_from_report_writes_the_schedule(tmp_path: Path):
    from harness.cli import main

    run_file = tmp_path / "report.json"
    run_file.write_text(json.dumps({"checks": [], "testnets": [{"name": "t", "seed": "s3"}],
                                    "timeline": [e.to_json() for e in synthetic_timeline()]}))
    out = tmp_path / "s.json"
    res = CliRunner().invoke(main, ["schedule", "from-report", str(run_file), "-o", str(out)])
    assert res.exit_code == 0, res.output
    s = Schedule.load(out)
    assert s.seed == "s3" and len(s.steps) == 3
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    res = CliRunner().invoke(main, ["schedule", "from-report", str(bad)])
    assert res.exit_code == 1 and "neither a run's report.json" in res.output
    with pytest.raises(ScheduleError, match="does not exist"):
        run_file_events(tmp_path / "missing.json")


def test_cli_from_report_with_an_unknown_testnet_is_an_error(tmp_path: Path, monkeypatch):
    from harness.cli import main

    monkeypatch.setenv("SESSION_TESTNET_HOME", str(tmp_path / "home"))
    run_file = tmp_path / "report.json"
    run_file.write_text(json.dumps({"checks": [], "timeline": [e.to_json() for e in
                                                               synthetic_timeline()]}))
    res = CliRunner().invoke(main, ["schedule", "from-report", str(run_file), "-n", "nope"])
    assert res.exit_code == 1 and "no testnet named 'nope'" in res.output
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"checks": [], "timeline": []}))
    res = CliRunner().invoke(main, ["schedule", "from-report", str(empty)])
    assert res.exit_code == 1 and "applied no fault" in res.output
