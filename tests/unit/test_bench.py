"""`testnet bench`, pure parts: percentiles, throughput, memory parsing (/proc and docker stats),
the ratios of two testnets' figures, the topologies the options make, and the table."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from harness.bench.cli import render, topologies
from harness.bench.figures import (
    RATIO_FIGURES,
    Stats,
    container_memory_bytes,
    figure,
    median_ratios,
    memory_summary,
    percentile,
    ratios,
    throughput,
    versus_targets,
    vmrss_kib,
)
from harness.bench.load import Load
from harness.bench.run import TESTNET_KEYS, TOP_LEVEL_KEYS, run_bench
from harness.cli import main as cli_main
from harness.topology import Topology

pytestmark = pytest.mark.unit

PROC_STATUS = """Name:\toxen-storage
State:\tS (sleeping)
VmPeak:\t  512000 kB
VmHWM:\t   30000 kB
VmRSS:\t   23244 kB
RssAnon:\t   12000 kB
Threads:\t12
"""


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile(list(reversed(values)), 0.95) == 95  # order does not matter
    assert percentile([float(v) for v in range(1, 31)], 0.99) == 30  # p99 of 30: the largest
    assert percentile([7.0], 0.01) == 7.0


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5])
def test_percentile_rejects_quantiles_outside_0_1(q: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        percentile([1.0, 2.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)


def test_stats_summary_has_p50_p95_p99_and_max() -> None:
    s = Stats([float(v) for v in range(1, 201)]).summary()
    assert s == {"n": 200, "p50_ms": 100.5, "p95_ms": 190.0, "p99_ms": 198.0, "max_ms": 200.0}
    assert Stats().summary() == {"n": 0}


def test_throughput_counts_successes_per_second() -> None:
    t = throughput(120, 100, {"HTTP 429": 20}, 2.0, 16, [10.0, 20.0, 30.0])
    assert t["per_s"] == 50.0 and t["ok"] == 100 and t["requests"] == 120
    assert t["errors"] == {"HTTP 429": 20} and t["concurrency"] == 16 and t["wall_s"] == 2.0
    assert t["p50_ms"] == 20.0 and t["p99_ms"] == 30.0
    assert throughput(5, 0, {"TimeoutError": 5}, 0.0, 1, [])["per_s"] == 0.0


def test_vmrss_is_read_from_proc_status() -> None:
    assert vmrss_kib(PROC_STATUS) == 23244
    assert vmrss_kib("Name:\tkthreadd\nState:\tS\n") is None  # kernel threads, zombies
    with pytest.raises(ValueError, match="VmRSS"):
        vmrss_kib("VmRSS:\t lots kB\n")


def test_container_memory_subtracts_inactive_page_cache() -> None:
    v1 = {"memory_stats": {"usage": 100 * 2**20, "stats": {"total_inactive_file": 30 * 2**20}}}
    v2 = {"memory_stats": {"usage": 100 * 2**20, "stats": {"inactive_file": 40 * 2**20}}}
    assert container_memory_bytes(v1) == 70 * 2**20
    assert container_memory_bytes(v2) == 60 * 2**20
    assert container_memory_bytes({"memory_stats": {"usage": 5}}) == 5
    assert container_memory_bytes({"memory_stats": {}}) is None  # not running
    assert container_memory_bytes({}) is None


def test_memory_summary_per_node_and_totals() -> None:
    m = memory_summary({"sn02": 30.04, "sn01": 20.0, "sn03": 25.0}, "proc")
    assert m == {"node_max_mib": 30.0, "nodes_total_mib": 75.0, "node_median_mib": 25.0,
                 "per_node_mib": {"sn01": 20.0, "sn02": 30.0, "sn03": 25.0}, "source": "proc"}
    assert list(m["per_node_mib"]) == ["sn01", "sn02", "sn03"]
    assert memory_summary({}, "proc") == {}


def _figures(up: float, store: float, retrieve: float, p50: float, p99: float,
             mem: float) -> dict[str, Any]:
    return {"up_s": up, "store_throughput": {"per_s": store}, "retrieve_throughput": {"per_s": retrieve},
            "send": {"p50_ms": p50, "p99_ms": p99},
            "memory": {"node_median_mib": mem, "node_max_mib": mem * 2, "nodes_total_mib": mem * 10}}


def test_ratios_are_ours_over_theirs_for_every_figure() -> None:
    r = ratios(_figures(10, 50, 300, 40, 90, 60), _figures(8, 100, 150, 20, 30, 20))
    assert r == {"up_s": 1.25, "store_per_s": 0.5, "retrieve_per_s": 2.0, "onion_p50_ms": 2.0,
                 "onion_p99_ms": 3.0, "memory_node_median_mib": 3.0, "memory_node_max_mib": 3.0,
                 "memory_nodes_total_mib": 3.0}
    assert set(r) == set(RATIO_FIGURES)
    assert ratios(_figures(1, 2, 3, 4, 5, 6), _figures(3, 3, 3, 3, 3, 3))["up_s"] == 0.333


def test_ratios_are_null_where_a_side_lacks_the_figure_or_divides_by_zero() -> None:
    ours = _figures(10, 50, 300, 40, 90, 60)
    theirs = _figures(8, 0, 150, 20, 30, 20)
    theirs["memory"] = {}  # memory could not be measured
    r = ratios(ours, theirs)
    assert r["store_per_s"] is None
    assert r["memory_node_median_mib"] is None and r["memory_nodes_total_mib"] is None
    assert r["up_s"] == 1.25
    assert figure({"send": {"n": 0}}, ("send", "p50_ms")) is None
    assert figure({"up_s": True}, ("up_s",)) is None


def test_versus_alone_benches_as_many_of_our_nodes() -> None:
    ours, theirs = topologies(None, 3, (), ("10:oxen-storage=/opt/oxen-storage",))
    assert theirs is not None
    assert ours.kinds == ["python"] and theirs.kinds == ["oxen-storage"]
    assert ours.node_count == theirs.node_count == 10
    assert ours.swarms == theirs.swarms == 3
    assert ours.name != theirs.name and ours.seed == theirs.seed
    assert theirs.nodes[0].path == "/opt/oxen-storage"


def test_nodes_groups_as_for_up() -> None:
    ours, theirs = topologies(None, 4, ("8:python",), ())
    assert theirs is None and ours.node_count == 8 and ours.swarms == 2
    default, _ = topologies(None, 3, (), ())
    assert default.node_count == 6 and default.swarms == 2 and default.nodes == ()
    assert topologies(3, 2, (), ())[0].node_count == 6


@pytest.mark.parametrize(("swarms", "nodes", "versus", "message"), [
    (None, ("6:python",), ("10:oxen-storage=/x",), "equal node counts"),
    (2, ("6:python",), (), "--swarms follows from --nodes"),
    (None, ("6:nosuchkind",), (), "unknown kind"),
    (None, (), ("6:oxen-storage=/x",), "at least 10"),
])
def test_refused_comparisons(swarms: int | None, nodes: tuple[str, ...], versus: tuple[str, ...],
                             message: str) -> None:
    with pytest.raises(click.UsageError, match=message):
        topologies(swarms, 3, nodes, versus)


def test_cli_refuses_unequal_node_counts_before_starting_anything() -> None:
    out = CliRunner().invoke(cli_main, ["bench", "--nodes", "12:python", "--versus", "10:oxen-storage=/x"])
    assert out.exit_code == 2 and "equal node counts" in out.output


def _side(label: str, store: float, mem: float) -> dict[str, Any]:
    lat = {"n": 3, "p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 30.0, "max_ms": 30.0}
    return {"label": label, "kinds": [label], "backend": "process", "nodes": 10, "swarms": 3,
            "proxies": True, "up_s": 5.0, "down_s": 1.0, "send": lat,
            "delivery": {**lat, "delivered": 2, "sent": 3}, "direct_store": lat,
            "store_throughput": {"per_s": store, "p50_ms": 1.0, "p99_ms": 2.0, "errors": {"HTTP 503": 1}},
            "retrieve_throughput": {"per_s": 10.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": {}},
            "memory": memory_summary({"sn01": mem}, "proc")}


def test_table_shows_both_testnets_and_the_ratios() -> None:
    ours, theirs = _side("python", 50.0, 60.0), _side("oxen-storage", 100.0, 20.0)
    result = {**ours, "cpus": 2, "load": {"messages": 3, "stores": 10, "retrieves": 10, "concurrency": 4},
              "versus": theirs, "ratios": ratios(ours, theirs),
              "toxiproxy": {"added_rtt_us": {"median": 100}, "throughput_mb_s": {"proxy": {"download": 1, "upload": 2}}},
              "targets": {"up_s": {"target": 15.0, "met": True}}}
    lines = render(result)
    assert "python ×10 (3 swarms)" in lines[1] and "oxen-storage ×10 (3 swarms)" in lines[1]
    assert lines[1].rstrip().endswith("ratio")
    store = next(line for line in lines if line.strip().startswith("store throughput"))
    assert store.split()[-5:] == ["50.0", "/s", "100.0", "/s", "0.50"]
    mem = next(line for line in lines if "memory per node (median)" in line)
    assert mem.split()[-1] == "3.00"
    assert any("store_throughput errors {'HTTP 503': 1}" in line for line in lines)
    assert any("only 2 of 3 messages delivered" in line for line in lines)
    single = render({k: v for k, v in result.items() if k not in ("versus", "ratios")})
    assert "ratio" not in single[1]


def test_json_keys_are_documented() -> None:
    assert set(TESTNET_KEYS) <= set(TOP_LEVEL_KEYS)
    assert {"backend", "nodes", "swarms", "cpus", "up_s", "down_s", "send", "delivery", "direct_store",
            "memory", "toxiproxy", "targets"} <= set(TOP_LEVEL_KEYS)  # the keys bench always had
    help_text = CliRunner().invoke(cli_main, ["bench", "--help"]).output
    for key in ("versus", "ratios", "store_throughput", "retrieve_throughput", "onion_p99_ms"):
        assert key in help_text, key


def test_no_proxies_applies_to_both_testnets() -> None:
    ours, theirs = topologies(None, 3, (), ("10:oxen-storage=/x",), proxies=False)
    assert theirs is not None and not ours.proxies and not theirs.proxies
    assert all(t.proxies for t in topologies(None, 3, (), ("10:oxen-storage=/x",)) if t is not None)


# --- rounds: two testnets alternating, judged on the median ratio ---------------------------------

def test_median_ratios_leave_out_unmeasured_rounds() -> None:
    per_round: list[dict[str, float | None]] = [
        {"store_per_s": 0.7, "onion_p50_ms": None}, {"store_per_s": 0.9, "onion_p50_ms": 1.2},
        {"store_per_s": 0.85, "onion_p50_ms": None}]
    med = median_ratios(per_round)
    assert med["store_per_s"] == 0.85 and med["onion_p50_ms"] == 1.2 and med["up_s"] is None


def test_versus_targets_judge_each_goal() -> None:
    t = versus_targets({"store_per_s": 0.81, "onion_p50_ms": 1.6}, rounds=3)
    assert t["ratios.store_per_s"] == {"op": ">=", "target": 0.8, "met": True,
                                       "of": "the median ratio of 3 rounds"}
    assert t["ratios.onion_p50_ms"]["met"] is False
    assert versus_targets({}, rounds=1)["ratios.store_per_s"] == {
        "op": ">=", "target": 0.8, "met": None, "of": "the ratio"}


def _fake_bench(monkeypatch: pytest.MonkeyPatch, store_rates: list[float]) -> list[str]:
    """bench_testnet answers the next store rate of ``store_rates`` for each testnet it is given
    (and records their names); the Toxiproxy bench is skipped."""
    import harness.bench.run as run_mod
    import nodes.toxiproxy.bench as proxy_bench

    names: list[str] = []
    rates = iter(store_rates)

    def bench_testnet(backend: str, topology: Topology, load: Load, report: Any, extra: Any = None) -> dict[str, Any]:
        names.append(topology.name)
        return _side(topology.kinds[0], next(rates), 10.0)

    monkeypatch.setattr(run_mod, "bench_testnet", bench_testnet)
    monkeypatch.setattr(proxy_bench, "run_bench", lambda **kw: {
        "added_rtt_us": {"median": 100}, "throughput_mb_s": {"proxy": {"download": 1, "upload": 2}}})
    return names


def test_rounds_alternate_the_two_testnets_and_judge_the_median(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = topologies(None, 3, ("10:python",), ("10:oxen-storage=/x",))
    assert theirs is not None
    # round 1 slow for ours (0.6), rounds 2 and 3 at 0.9 and 0.85
    names = _fake_bench(monkeypatch, [60.0, 100.0, 90.0, 100.0, 85.0, 100.0])
    result = run_bench("process", ours, Load(), lambda m: None, versus=theirs, rounds=3)
    assert names == [ours.name, theirs.name, f"{ours.name}-r2", f"{theirs.name}-r2",
                     f"{ours.name}-r3", f"{theirs.name}-r3"]
    assert [r["ratios"]["store_per_s"] for r in result["rounds"]] == [0.6, 0.9, 0.85]
    assert result["rounds"][1]["figures"]["store_per_s"] == [90.0, 100.0]
    assert result["ratios"]["store_per_s"] == 0.6  # the first round, as without --rounds
    assert result["ratios_median"]["store_per_s"] == 0.85
    assert result["targets"]["ratios.store_per_s"]["met"] is True  # judged on the median
    assert set(result) <= set(TOP_LEVEL_KEYS)
    lines = render(result)
    assert any(line.split() == ["store_per_s", "0.60", "0.90", "0.85", "→", "0.85"] for line in lines), lines
    assert any("goal store_per_s >= 0.8 (the median ratio of 3 rounds): met" in line for line in lines)


def test_one_round_judges_its_ratio_and_only_against_the_real_server(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = topologies(None, 3, ("10:python",), ("10:oxen-storage=/x",))
    _fake_bench(monkeypatch, [60.0, 100.0])
    result = run_bench("process", ours, Load(), lambda m: None, versus=theirs)
    assert "rounds" not in result and "ratios_median" not in result
    assert result["targets"]["ratios.store_per_s"]["met"] is False
    ours, other = topologies(None, 3, ("10:python",), ("10:python",))
    _fake_bench(monkeypatch, [60.0, 100.0])
    result = run_bench("process", ours, Load(), lambda m: None, versus=other)
    assert set(result["targets"]) == {"up_s"}  # the goals are about the real server


def test_rounds_need_versus() -> None:
    out = CliRunner().invoke(cli_main, ["bench", "--rounds", "3"])
    assert out.exit_code == 2 and "--rounds alternates two testnets" in out.output
    with pytest.raises(ValueError, match="give versus"):
        run_bench("process", topologies(None, 3, (), ())[0], Load(), lambda m: None, rounds=2)
