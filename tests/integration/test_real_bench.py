"""``testnet bench --versus 10:oxen-storage=BINARY``: the same small load on 10 of our nodes and
on 10 real storage servers, one run, inside a loopback-only network namespace (only ``lo``; the
PID namespace kills whatever would survive). Asserts that the JSON holds both testnets' figures,
measured the same way, and ratios computed from them.

Skipped, with the reason, where the binary, its libraries or namespaces are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from real_storage_env import ROOT, find_binary, namespace

from harness.bench.figures import RATIO_FIGURES, figure, ratios

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODES = 10
LOAD = {"messages": 3, "stores": 40, "retrieves": 40, "concurrency": 8}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    binary = find_binary()
    ns = namespace()
    home = tmp_path_factory.mktemp("real-bench-home")
    out = home / "bench.json"
    argv = [sys.executable, "-m", "harness", "bench", "--backend", "process",
            "--versus", f"{NODES}:oxen-storage={binary}", "--json", "-o", str(out),
            *[a for k, v in LOAD.items() for a in (f"--{k}", str(v))]]
    script = "ip link set lo up && exec " + " ".join(f"'{a}'" for a in argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SESSION_TESTNET_HOME": str(home),
           "SESSION_TESTNET_BACKEND": "process"}
    try:
        proc = subprocess.run([*ns, "sh", "-c", script], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=240)
    except subprocess.TimeoutExpired as exc:  # unshare was killed: the PID namespace takes its children
        pytest.fail(f"the side-by-side bench did not finish in {exc.timeout}s; stderr: {exc.stderr!r}")
    assert proc.returncode == 0, f"testnet bench exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    data: dict[str, Any] = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == data, "-o must keep the same JSON"
    networks = home / "networks"
    assert not networks.exists() or not any(networks.iterdir()), "bench must take both testnets down"
    return data


def test_both_testnets_have_the_same_shape_and_load(result: dict[str, Any]) -> None:
    ours, real = result, result["versus"]
    assert ours["kinds"] == ["python"] and real["kinds"] == ["oxen-storage"]
    assert ours["nodes"] == real["nodes"] == NODES
    assert ours["swarms"] == real["swarms"] == NODES // 3
    assert ours["proxies"] and real["proxies"], "both testnets are measured behind Toxiproxy"
    assert result["load"] == LOAD


@pytest.mark.parametrize("side", ["ours", "real"])
def test_each_side_has_every_figure(result: dict[str, Any], side: str) -> None:
    fig = result if side == "ours" else result["versus"]
    assert fig["up_s"] > 0 and fig["down_s"] > 0
    for key, count in (("store_throughput", LOAD["stores"]), ("retrieve_throughput", LOAD["retrieves"])):
        t = fig[key]
        assert t["errors"] == {} and t["ok"] == t["requests"] == count, (key, t)
        assert t["per_s"] > 0 and t["p99_ms"] >= t["p50_ms"] > 0, t
    assert fig["send"]["n"] == LOAD["messages"] and fig["send"]["p99_ms"] >= fig["send"]["p50_ms"] > 0
    assert fig["delivery"]["delivered"] == LOAD["messages"], fig["delivery"]
    mem = fig["memory"]
    assert sorted(mem["per_node_mib"]) == [f"sn{i:02d}" for i in range(1, NODES + 1)]
    assert all(v > 1 for v in mem["per_node_mib"].values()), mem
    assert "VmRSS" in mem["source"]


def test_ratios_are_computed_from_both_sides(result: dict[str, Any]) -> None:
    r = result["ratios"]
    assert r == ratios(result, result["versus"])
    assert set(r) == set(RATIO_FIGURES) and all(v is not None and v > 0 for v in r.values()), r
    for name, path in RATIO_FIGURES.items():
        ours, real = figure(result, path), figure(result["versus"], path)
        assert ours is not None and real is not None
        assert r[name] == pytest.approx(ours / real, rel=1e-3, abs=1e-3), name


def test_the_goals_against_the_real_server_are_judged(result: dict[str, Any]) -> None:
    for name in ("store_per_s", "onion_p50_ms"):
        t = result["targets"][f"ratios.{name}"]
        assert t["of"] == "the ratio" and isinstance(t["met"], bool)
        assert t["met"] == (result["ratios"][name] >= t["target"] if t["op"] == ">="
                            else result["ratios"][name] <= t["target"])
