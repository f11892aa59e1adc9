"""The figures of ``testnet bench --scale``: /proc parsing and the arithmetic of totals, medians,
CPU and request rates, and the targets."""

from __future__ import annotations

import pytest

from harness.bench.scale import (
    SCALE_KEYS,
    ProcMemory,
    cpu_percent,
    cpu_ticks,
    memory_figures,
    render_scale,
    requests_rate,
    targets,
    used_kib,
)

pytestmark = pytest.mark.unit

ROLLUP = """55e76920c000-7ffeec4bb000 ---p 00000000 00:00 0                          [rollup]
Rss:               51200 kB
Pss:               13312 kB
Pss_Dirty:         13000 kB
Shared_Clean:       4208 kB
Shared_Dirty:      30456 kB
Private_Clean:       512 kB
Private_Dirty:     12288 kB
Swap:                  0 kB
"""


def test_smaps_rollup_is_parsed():
    m = ProcMemory.parse(ROLLUP)
    assert (m.rss, m.pss, m.uss) == (51200, 13312, 512 + 12288)
    with pytest.raises(ValueError, match="Rss/Pss"):
        ProcMemory.parse("Private_Dirty: 1 kB\n")


def test_cpu_ticks_survive_spaces_in_the_command_name():
    stat = "1234 (python3 -m x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 2 0 99 0 0"
    assert cpu_ticks(stat) == 300


def test_memory_figures_sum_and_median():
    mib = 1024
    nodes = {"sn01": ProcMemory(50 * mib, 10 * mib, 9 * mib), "sn02": ProcMemory(52 * mib, 14 * mib, 13 * mib),
             "sn03": ProcMemory(60 * mib, 30 * mib, 29 * mib)}
    others = {99: ProcMemory(40 * mib, 20 * mib, 20 * mib)}
    f = memory_figures(nodes, others)
    assert f["rss_total_mib"] == 162.0 and f["pss_total_mib"] == 54.0
    assert f["rss_node_median_mib"] == 52.0 and f["pss_node_median_mib"] == 14.0
    assert f["uss_node_median_mib"] == 13.0
    assert f["testnet_pss_total_mib"] == 74.0 and f["testnet_processes"] == 4
    with pytest.raises(ValueError, match="no node"):
        memory_figures({}, others)


def test_cpu_percent_counts_processes_seen_at_both_ends():
    # 2 processes, 100 ticks/s: 50 + 150 ticks over 10 s = 2 s of CPU = 20 % of one core; a
    # process that appeared or vanished during the window is left out
    before = {1: 1000, 2: 0, 3: 7}
    after = {1: 1050, 2: 150, 4: 999}
    assert cpu_percent(before, after, 10.0, 100) == 20.0


def test_requests_rate():
    before = {"sn01": {"seed": 10, "peers": 0}, "sn02": {"seed": 5, "peers": 5}}
    after = {"sn01": {"seed": 30, "peers": 0}, "sn02": {"seed": 25, "peers": 5}, "sn03": {"seed": 9}}
    assert requests_rate(before, after, 10.0) == 4.0
    assert requests_rate({}, after, 10.0) is None


def test_targets():
    t = targets(59.9, 8 * 1024)
    assert t["up_s"]["met"] and t["memory"]["met"] and t["memory"]["value"] == 8.0
    t = targets(60.5, 8 * 1024 + 1)
    assert not t["up_s"]["met"] and not t["memory"]["met"]


def test_table_names_every_figure():
    scale = {k: 1.5 for k in SCALE_KEYS}
    scale.update(nodes=6, launcher=True, proxies=True, onion_messages=5, idle_requests_per_s=None,
                 targets=targets(3.0, 300.0))
    lines = render_scale({"scale": scale})
    assert lines[0].startswith("6 python nodes") and "forked by the launcher" in lines[0]
    text = "\n".join(lines)
    assert "idle requests sent" in text and "-" in text  # a missing figure shows as '-'
    assert "up target ≤ 60 s: met" in text and "memory target ≤ 8 GiB (testnet PSS): met" in text


def test_machine_used_memory():
    meminfo = "MemTotal:       24683692 kB\nMemFree:        1000 kB\nMemAvailable:   20683692 kB\n"
    assert used_kib(meminfo) == 4_000_000
