"""``testnet bench --quick``: targets computed from the figures, the JSON keys it adds, its
table rows (fake figures; no network)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from harness.bench.load import Load
from harness.bench.quick import (
    MIN_ONION_SAMPLES,
    QUICK_KEYS,
    QUICK_TOP_LEVEL_KEYS,
    TARGETS,
    QuickParams,
    assemble,
    quick_load,
    render_quick,
    target_results,
)
from harness.cli import main as cli_main

pytestmark = pytest.mark.unit

GOOD: dict[str, float | None] = {
    "bringup_s": 4.0, "compose_up_s": 6.0, "onion_roundtrip_p50_ms": 20.0,
    "onion_roundtrip_p99_ms": 90.0, "onion_stores_per_s": 350.0, "direct_stores_per_s": 900.0,
    "delivery_rate_under_churn": 1.0}


def test_every_quick_key_has_a_target_entry() -> None:
    assert set(TARGETS) == set(QUICK_KEYS)
    assert set(target_results(GOOD, {})) == set(QUICK_KEYS)


def test_targets_met_when_every_figure_is_within() -> None:
    t = target_results(GOOD, {})
    assert all(t[k]["met"] for k in QUICK_KEYS if k != "direct_stores_per_s")
    assert t["direct_stores_per_s"]["met"] is None and t["direct_stores_per_s"]["target"] is None
    assert t["bringup_s"] == {"op": "<=", "target": 5.0, "met": True}
    assert t["onion_stores_per_s"] == {"op": ">=", "target": 300.0, "met": True}


@pytest.mark.parametrize(("key", "value"), [
    ("bringup_s", 5.01), ("onion_roundtrip_p50_ms", 25.1), ("onion_roundtrip_p99_ms", 100.5),
    ("onion_stores_per_s", 299.9), ("delivery_rate_under_churn", 0.9989)])
def test_a_figure_past_its_target_is_missed(key: str, value: float) -> None:
    t = target_results({**GOOD, key: value}, {})
    assert t[key]["met"] is False and "reason" not in t[key]
    assert all(t[k]["met"] for k in QUICK_KEYS if k not in (key, "direct_stores_per_s"))


def test_boundaries_are_met() -> None:
    t = target_results({**GOOD, "bringup_s": 5.0, "delivery_rate_under_churn": 0.999,
                        "onion_stores_per_s": 300.0}, {})
    assert t["bringup_s"]["met"] and t["delivery_rate_under_churn"]["met"] and t["onion_stores_per_s"]["met"]


def test_compose_baseline_compares_with_the_harness_bringup() -> None:
    slower = target_results({**GOOD, "bringup_s": 4.5, "compose_up_s": 4.0}, {})
    assert slower["bringup_s"]["met"] is True          # within 5 s ...
    assert slower["compose_up_s"]["met"] is False      # ... but slower than plain compose
    assert slower["compose_up_s"]["target"] == "bringup_s"


def test_unmeasured_figure_is_not_met_and_says_why() -> None:
    t = target_results({**GOOD, "compose_up_s": None, "delivery_rate_under_churn": None},
                       {"compose_up_s": "docker-compose is not installed"})
    assert t["compose_up_s"] == {"op": ">=", "target": "bringup_s", "met": False,
                                 "reason": "docker-compose is not installed",
                                 "note": TARGETS["compose_up_s"].note}
    assert t["delivery_rate_under_churn"]["met"] is False
    assert "delivery_rate_under_churn" in t["delivery_rate_under_churn"]["reason"]


def test_missing_baseline_fails_the_comparison_with_its_reason() -> None:
    t = target_results({**GOOD, "bringup_s": None}, {"bringup_s": "no engine"})
    assert t["bringup_s"]["met"] is False
    assert t["compose_up_s"]["met"] is False
    assert "bringup_s" in t["compose_up_s"]["reason"] and "no engine" in t["compose_up_s"]["reason"]


def _bench_result() -> dict[str, Any]:
    lat = {"n": 200, "p50_ms": 12.0, "p95_ms": 40.0, "p99_ms": 130.0, "max_ms": 140.0}
    return {"label": "python", "backend": "process", "up_s": 3.0, "send": lat,
            "store_throughput": {"per_s": 812.5, "p50_ms": 1.0},
            "targets": {"up_s": {"target": 15.0, "met": True}}}


def test_assemble_adds_every_key_from_the_figures() -> None:
    docker_up = {"backend": "docker", "up_s": 6.5, "warm_up_s": 7.0}
    compose_up = {"backend": "docker-compose", "up_s": None, "reason": "docker-compose missing"}
    extras = {"onion_stores": {"per_s": 120.0, "acknowledged": 960},
              "churn": {"rate": 0.998, "acknowledged": 500, "delivered": 499, "seed": "abc",
                        "steps": 3, "window_s": 30.0}}
    r = assemble(_bench_result(), "process", docker_up, compose_up, extras)
    assert set(QUICK_TOP_LEVEL_KEYS) <= set(r)
    assert (r["bringup_s"], r["compose_up_s"]) == (6.5, None)
    assert (r["onion_roundtrip_p50_ms"], r["onion_roundtrip_p99_ms"]) == (12.0, 130.0)
    assert (r["onion_stores_per_s"], r["direct_stores_per_s"]) == (120.0, 812.5)
    assert r["delivery_rate_under_churn"] == 0.998
    t = r["targets"]
    assert t["up_s"] == {"target": 15.0, "met": True}  # today's target stays
    assert not t["bringup_s"]["met"] and t["onion_roundtrip_p50_ms"]["met"]
    assert not t["onion_roundtrip_p99_ms"]["met"] and not t["delivery_rate_under_churn"]["met"]
    assert t["compose_up_s"]["reason"] == "docker-compose missing"
    q = r["quick"]
    assert q["backends"]["bringup_s"] == "docker" and q["backends"]["compose_up_s"] == "docker-compose"
    assert all(q["backends"][k] == "process" for k in QUICK_KEYS[2:])
    assert q["reasons"] == {"compose_up_s": "docker-compose missing"}
    json.dumps(r)  # the result is JSON


def test_assemble_without_measurements_has_every_key_null_with_reasons() -> None:
    r = assemble({}, "docker", {"up_s": None, "reason": "x"}, {"up_s": None, "reason": "y"}, {})
    assert all(r[k] is None for k in QUICK_KEYS)
    assert set(r["quick"]["reasons"]) == set(QUICK_KEYS)
    assert all(r["targets"][k]["met"] in (False, None) for k in QUICK_KEYS)


def test_table_rows_say_met_or_missed_and_why() -> None:
    r = assemble(_bench_result(), "process", {"up_s": 4.2}, {"up_s": None, "reason": "no compose"},
                 {"onion_stores": {"per_s": 400.0},
                  "churn": {"rate": 1.0, "seed": "s1", "steps": 3, "window_s": 30.0,
                            "acknowledged": 150, "delivered": 150}})
    lines = render_quick(r)
    row = {line.split()[0]: line for line in lines[1:] if line.split()[0] in QUICK_KEYS}
    assert set(row) == set(QUICK_KEYS)
    assert "4.20 s" in row["bringup_s"] and " met " in row["bringup_s"]
    assert "MISSED" in row["compose_up_s"] and "no compose" in row["compose_up_s"]
    assert "400.0 /s" in row["onion_stores_per_s"] and " met " in row["onion_stores_per_s"]
    assert "MISSED" in row["onion_roundtrip_p99_ms"]
    assert "100.00%" in row["delivery_rate_under_churn"]
    assert "(no target)" in row["direct_stores_per_s"]
    assert any("seed s1" in line and "150 of 150" in line for line in lines)


def test_quick_load_has_enough_sequential_onion_stores() -> None:
    assert quick_load(Load(messages=30)).messages == MIN_ONION_SAMPLES
    assert quick_load(Load(messages=500)).messages == 500
    assert QuickParams().load.messages >= MIN_ONION_SAMPLES


def test_cli_documents_quick_and_refuses_it_with_versus() -> None:
    runner = CliRunner()
    help_text = runner.invoke(cli_main, ["bench", "--help"]).output
    assert "--quick" in help_text
    for key in QUICK_KEYS:
        assert key in help_text, key
    res = runner.invoke(cli_main, ["bench", "--quick", "--versus", "6:python"])
    assert res.exit_code != 0 and "--quick" in res.output


def test_standard_churn_is_the_suites_seeded_schedule() -> None:

    from harness.faults import Schedule
    from harness.suites.support import standard_churn

    names = [f"sn0{i}" for i in range(1, 7)]
    net = SimpleNamespace(topology=SimpleNamespace(seed="abc"),
                          nodes=[SimpleNamespace(name=n) for n in names])
    swarms = {1: names[:3], 2: names[3:]}
    got = standard_churn(net, 30.0, swarms)
    want = Schedule.churn("abc", 30.0, 10.0, nodes=names, swarms=swarms, action="kill",
                          name="standard-churn")
    assert got.dumps() == want.dumps() and len(got.steps) == 3
    assert standard_churn(net, 30.0, swarms).dumps() == got.dumps()  # seeded: replayable
    other = SimpleNamespace(topology=SimpleNamespace(seed="xyz"), nodes=net.nodes)
    assert standard_churn(other, 120.0, swarms).steps != standard_churn(net, 120.0, swarms).steps


def test_compose_baseline_without_compose_is_null_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.bench import quick_docker
    from harness.topology import Topology

    monkeypatch.setattr(quick_docker.shutil, "which", lambda _name: None)
    out = quick_docker.compose_bringup(Topology(name="nocompose"), client=None, report=lambda _m: None)
    assert out["up_s"] is None and "docker-compose" in out["reason"]


def test_docker_figures_without_an_engine_are_null_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.bench import quick_docker
    from harness.topology import Topology

    monkeypatch.setattr(quick_docker, "docker_client", lambda: (None, "Docker engine not reachable (x)"))
    up, compose = quick_docker.docker_figures(Topology(name="noengine"), lambda _m: None)
    assert up["up_s"] is None and compose["up_s"] is None
    r = assemble({}, "process", up, compose, {})
    assert r["targets"]["bringup_s"]["reason"] == "Docker engine not reachable (x)"
    assert r["quick"]["backends"]["bringup_s"] == "docker"


def test_compose_baseline_takes_the_next_subnet_when_its_choice_was_taken(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # another testnet (an xdist worker's, a user's) took the chosen subnet between the choice
    # and 'up': the baseline takes the next free one and times only the try that got its network
    import harness.backends.docker_net as docker_net
    import harness.images as images
    from harness.bench import quick_docker
    from harness.topology import Topology

    monkeypatch.setenv("SESSION_TESTNET_HOME", str(tmp_path))
    monkeypatch.setattr(quick_docker, "compose_command", lambda: ["docker-compose"])
    monkeypatch.setattr(images, "ensure_images", lambda _c: SimpleNamespace(node="img"))
    asked: list[set[int]] = []

    def free(_client: Any, used: set[int]) -> int:
        asked.append(set(used))
        return min(set(range(200, 210)) - used)

    monkeypatch.setattr(docker_net, "free_net_index", free)
    calls: list[list[str]] = []

    def run(cmd: list[str], **_kw: Any) -> Any:
        calls.append(cmd)
        compose_file = Path(cmd[cmd.index("-f") + 1]).read_text()
        overlap = "up" in cmd and "10.200.0.0" in compose_file
        return SimpleNamespace(returncode=1 if overlap else 0, stdout="", stderr=(
            "ERROR: Pool overlaps with other one on this address space" if overlap else ""))

    async def ready(_net: Any, _timeout: float) -> None:
        return None

    monkeypatch.setattr(quick_docker.subprocess, "run", run)
    monkeypatch.setattr(quick_docker, "_wait_compose_ready", ready)
    out = quick_docker.compose_bringup(Topology(name="taken"), client=None, report=lambda _m: None)
    assert asked == [set(), {200}]
    assert [c[-2:] for c in calls] == [["up", "-d"], ["down", "-v"], ["up", "-d"], ["down", "-v"]]
    assert out["up_s"] is not None and "reason" not in out and out["subnet_retries"] == 1

    # a failure that is not a taken subnet is not retried, and says what failed
    calls.clear()

    def broken(cmd: list[str], **_kw: Any) -> Any:
        calls.append(cmd)
        return SimpleNamespace(returncode=1 if "up" in cmd else 0, stdout="",
                               stderr="no such image: img")

    monkeypatch.setattr(quick_docker.subprocess, "run", broken)
    out = quick_docker.compose_bringup(Topology(name="broken"), client=None, report=lambda _m: None)
    assert out["up_s"] is None and "no such image" in out["reason"]
    assert [c[-2:] for c in calls] == [["up", "-d"], ["down", "-v"]]
