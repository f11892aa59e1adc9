"""Per-link faults between real storage servers, as the Session client sees them: on 10 real
servers (process backend, loopback-only namespace), a latency fault on the link A->B slows onion
requests whose path goes A then B and no others, a partition {A} | {B} makes them fail while
others work, and ``heal`` restores them. The run happens once (tests/integration/real_links_net.py
writes a report); each test asserts one part of it. Skipped, with the reason, where the binary, its
libraries or namespaces are missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from typing import Any

import pytest
from real_storage_env import ROOT, find_binary, namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAYLOAD = Path(__file__).with_name("real_links_net.py")
NODES = 10
LATENCY_MS = 400  # as in real_links_net.py


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    binary = find_binary()
    ns = namespace()
    work = tmp_path_factory.mktemp("real-links")
    try:
        proc = subprocess.run([*ns, sys.executable, str(PAYLOAD), str(binary), str(work)], cwd=ROOT,
                              capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired as exc:  # unshare was killed: the PID namespace takes its children
        pytest.fail(f"the real-node testnet did not finish in {exc.timeout}s; stderr: {exc.stderr!r}")
    path = work / "report.json"
    if not path.exists():
        pytest.fail(f"payload exited {proc.returncode} without a report; stderr:\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(path.read_text())
    assert data.get("error") is None, f"payload failed: {data['error']}; logs: {data.get('logs_tail')}"
    yield data


def _ms(samples: list[dict[str, Any]]) -> list[float]:
    assert samples and all(s["ok"] for s in samples), samples
    return [s["ms"] for s in samples]


def test_every_real_node_sees_its_peers_at_its_own_link_proxies(report: dict[str, Any]) -> None:
    peer_ips = report["peer_ips"]
    assert sorted(peer_ips) == [f"sn{i:02d}" for i in range(1, NODES + 1)]
    for name, peers in peer_ips.items():
        assert sorted(peers) == sorted(n for n in peer_ips if n != name), name
    # one address per (viewer, peer): no two viewers share a link proxy
    pairs = [ip for peers in peer_ips.values() for ip in peers.values()]
    assert len(set(pairs)) == NODES * (NODES - 1)
    conns = report["connections"]
    assert conns["to_link_proxies"] > 0, conns
    assert conns["to_advertised_bypassing"] == 0, f"a node bypassed its link proxies: {conns}"


def test_link_latency_slows_paths_through_a_then_b_only(report: dict[str, Any],
                                                        record_property: Any) -> None:
    t = report["timings"]
    before, during = median(_ms(t["before"]["path"])), median(_ms(t["link_latency"]["path"]))
    control = median(_ms(t["link_latency"]["control"]))
    record_property("path_ms_before", before)
    record_property("path_ms_link_latency", during)
    record_property("control_ms_link_latency", control)
    assert during >= before + 0.8 * LATENCY_MS, (before, during)
    assert control < during - 0.8 * LATENCY_MS, (control, during)
    a, b = report["plan"]["path"][:2]
    toxics = {s.split("/")[0] for s in report["latency_toxics"]}
    a_px, b_px = a, b  # node proxies are named after the nodes
    assert toxics == {f"{a_px}->{b_px}", f"{a_px}->{b_px}-omq", f"{b_px}->{a_px}-omq"}, toxics


def test_partition_fails_paths_through_a_then_b_only(report: dict[str, Any]) -> None:
    t = report["timings"]["partition"]
    assert t["path"] and not any(s["ok"] for s in t["path"]), t["path"]
    assert _ms(t["control"])
    a, b = report["plan"]["path"][:2]
    assert report["partition_disabled"] == sorted(
        [f"{a}->{b}", f"{a}->{b}-omq", f"{b}->{a}", f"{b}->{a}-omq"])


def test_heal_restores_paths_and_keeps_the_pair_links(report: dict[str, Any],
                                                      record_property: Any) -> None:
    record_property("recovered_s", report["recovered_s"])
    assert report["recovered_s"] is not None, "no onion request over A -> B worked within 30 s of heal"
    assert report["cut_removed"]
    assert median(_ms(report["timings"]["after_heal"]["path"])) < LATENCY_MS
    links = report["link_proxies_after_heal"]
    assert len(links) == 2 * NODES * (NODES - 1)
    assert all(v == {"enabled": True, "toxics": 0} for v in links.values()), links


def test_nothing_leaves_the_machine(report: dict[str, Any]) -> None:
    assert report["links"] == ["lo"] and report["links_at_end"] == ["lo"]
    facts = report["log_facts"]
    assert sorted(facts) == [f"sn{i:02d}" for i in range(1, NODES + 1)]
    for name, f in facts.items():
        assert f["active"], f"{name} never became active"
        assert f["bootstrap_lines"] == [], f"{name} tried to reach public seed nodes: {f['bootstrap_lines']}"
