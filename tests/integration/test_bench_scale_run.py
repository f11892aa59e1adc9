"""``testnet bench --scale 6 --json``: the figures are all there and sane (not the timed
targets: those are for the 250-node run), and the testnet is gone afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.backends.process import _all_marked
from harness.bench.scale import SCALE_KEYS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NODES = 6


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("scale-home")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SESSION_TESTNET_HOME": str(home)}
    env.pop("SESSION_TESTNET_LAUNCHER", None)
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--scale", str(NODES), "--messages", "3",
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"bench --scale exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    networks = home / "networks"
    assert not networks.exists() or not any(networks.iterdir()), "bench --scale must take its testnet down"
    assert not [p for p, mark in _all_marked().items() if mark.startswith(str(home))], "processes left"
    data: dict[str, Any] = json.loads(proc.stdout)
    assert list(data) == ["scale"]
    return data["scale"]


def test_every_figure_is_there(scale: dict[str, Any]) -> None:
    assert list(scale) == list(SCALE_KEYS)
    assert scale["nodes"] == NODES and scale["launcher"] is True
    assert set(scale["targets"]) == {"up_s", "memory"}
    for t in scale["targets"].values():
        assert isinstance(t["met"], bool) and t["target"] > 0


def test_figures_are_sane(scale: dict[str, Any]) -> None:
    assert 0 < scale["up_s"] < 300
    # every node is a process of its own; PSS can't exceed RSS, the private part can't exceed PSS
    assert scale["testnet_processes"] >= NODES + 3  # + seed, launcher, file server (+ Toxiproxy)
    assert 0 < scale["uss_node_median_mib"] <= scale["pss_node_median_mib"] + 0.1
    assert scale["pss_node_median_mib"] <= scale["rss_node_median_mib"]
    assert scale["pss_total_mib"] <= scale["rss_total_mib"] <= NODES * 500
    assert scale["pss_total_mib"] < scale["testnet_pss_total_mib"]
    # forked from the launcher, a node shares most of its pages: PSS well under RSS
    assert scale["pss_node_median_mib"] < 0.75 * scale["rss_node_median_mib"]
    assert 0 <= scale["idle_cpu_percent"] <= scale["idle_cpu_percent_all"] <= 200 * 2
    assert scale["idle_window_s"] >= 9.5
    # an idle node proves and polls about once a second each, and talks to no peer
    assert 1.0 <= scale["idle_requests_per_node_per_s"] <= 4.0
    assert scale["onion_messages"] == 3
    assert 0 < scale["onion_roundtrip_p50_ms"] <= scale["onion_roundtrip_p99_ms"] < 30_000
