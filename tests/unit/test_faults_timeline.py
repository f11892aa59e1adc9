"""harness.faults.timeline: events, JSON-lines save/load, append-as-you-go files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.faults.timeline import Event, Timeline

pytestmark = pytest.mark.unit


def sample(tl: Timeline) -> None:
    tl.record(Event("latency", "apply", nodes=["sn01"], target="random:1",
                    params={"ms": 200, "jitter": 0}, step=0))
    tl.record(Event("partition", "apply", nodes=["sn01", "sn02"], target="sn01",
                    links=["sn01->sn02", "sn02->sn01"], result={"side_a": ["sn01"]}, step=1))
    tl.record(Event("latency", "remove", nodes=["sn01"], target="random:1",
                    params={"ms": 200, "jitter": 0}, error="proxy gone", step=0))


def test_round_trip_keeps_every_field(tmp_path: Path):
    tl = Timeline()
    sample(tl)
    path = tl.save(tmp_path / "t.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["action"] for line in lines)
    back = Timeline.load(path)
    assert [e.to_json() for e in back] == [e.to_json() for e in tl]
    assert back.resolved() == tl.resolved()
    assert [e.seq for e in back] == [0, 1, 2]
    assert back.errors()[0].error == "proxy gone"


def test_times_are_wall_and_monotonic_offsets():
    tl = Timeline()
    t0 = time.time()
    a = tl.record(Event("kill", "apply", nodes=["sn03"]))
    time.sleep(0.02)
    b = tl.record(Event("kill", "remove", nodes=["sn03"]))
    assert t0 - 1 <= a.wall <= time.time()
    assert 0 <= a.offset < b.offset and b.offset - a.offset >= 0.015


def test_resolved_drops_only_timing_fields():
    tl1, tl2 = Timeline(), Timeline()
    sample(tl1)
    time.sleep(0.01)
    sample(tl2)
    assert tl1.resolved() == tl2.resolved()
    r = tl1.resolved()[1]
    assert "wall" not in r and "offset" not in r and "seq" not in r
    assert r["links"] == ["sn01->sn02", "sn02->sn01"] and r["step"] == 1
    tl2.events[0].nodes = ["sn02"]
    assert tl1.resolved() != tl2.resolved()


def test_path_appends_each_event_as_it_happens(tmp_path: Path):
    path = tmp_path / "sub" / "faults.jsonl"
    tl = Timeline(path)
    tl.record(Event("down", "apply", nodes=["sn02"]))
    assert len(path.read_text().splitlines()) == 1
    Timeline(path).record(Event("up", "apply", nodes=["sn02"]))  # another process appends
    assert [e.action for e in Timeline.load(path)] == ["down", "up"]


def test_bad_input_is_reported(tmp_path: Path):
    with pytest.raises(ValueError, match="phase"):
        Event("kill", "sideways")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"action": "kill", "phase": "apply"}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        Timeline.load(bad)
    with pytest.raises(FileNotFoundError):
        Timeline.load(tmp_path / "none.jsonl")
    assert "FAILED: x" in Event("kill", "apply", error="x").describe()
