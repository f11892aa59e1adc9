"""Per-link faults between real storage servers, measured with the Session client from inside a
loopback-only network namespace.

Run by tests/integration/test_real_links.py as
``unshare --net --pid --fork --kill-child --mount-proc python3 real_links_net.py BINARY WORKDIR``.
It refuses to run where the namespace has any interface but ``lo``. It brings up 10 real servers
(``testnet up --nodes 10:oxen-storage=BINARY --backend process``), picks two onion paths that do
not touch the destination's swarm — PATH = [A, B, X] (A the guard, B the second hop) and CONTROL =
[C, D, Y] — and times the client's ``get_swarm`` onion requests over each (one attempt, no
retries) with no fault, with a latency fault on the link A->B, with a partition {A} | {B}, and
after ``heal``; then ``testnet down``. Every fact goes to WORKDIR/report.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from real_nodes_net import BOOTSTRAP_MARKS, cli, links, must, node_logs  # noqa: E402 - the sibling payload's helpers

from harness.client import Account, SessionClient  # noqa: E402
from harness.client.errors import ClientError  # noqa: E402
from harness.client.paths import OnionPath  # noqa: E402
from harness.faults import Faults  # noqa: E402
from harness.network import Testnet  # noqa: E402
from harness.nodekinds.probes import swarm_probe_account  # noqa: E402

NAME = "reallinks"
NODES = 10
LATENCY_MS = 400
PROBES = 3
REQUEST_TIMEOUT = 6.0


def plan(net: Testnet) -> dict[str, Any]:
    """Two disjoint 3-hop paths outside the destination swarm, and an account in that swarm."""
    seed_swarms = net.seed_admin("state", method="GET")
    by_key = {n.pubkey_ed25519: n.name for n in net.state.nodes}
    swarms: dict[int, list[str]] = {}
    for entry in seed_swarms["nodes"]:
        if entry.get("swarm_id") is not None and entry["pubkey_ed25519"] in by_key:
            swarms.setdefault(int(entry["swarm_id"]), []).append(by_key[entry["pubkey_ed25519"]])
    dest_swarm = max(swarms, key=lambda s: len(swarms[s]))
    others = sorted(n for s, members in swarms.items() if s != dest_swarm for n in members)
    if len(others) < 6:
        raise RuntimeError(f"need 6 nodes outside the destination swarm, have {others} ({swarms})")
    return {"path": others[:3], "control": others[3:6], "dest_swarm": dest_swarm,
            "dest_members": sorted(swarms[dest_swarm]),
            "account": swarm_probe_account(dest_swarm)}


async def timings(net: Testnet, hops: list[str], account: str, probes: int = PROBES
                  ) -> list[dict[str, Any]]:
    """The client's own attempt records of ``probes`` ``get_swarm`` onion requests over exactly
    ``hops`` (a client with that one path, one attempt per request)."""
    records: list[Any] = []
    async with SessionClient(net.seed_url, Account.generate(), sink=records, test_guards=False,
                             max_attempts=1, path_count=1, request_timeout=REQUEST_TIMEOUT) as c:
        await c.bootstrap()
        by_key = {s.ed25519: s for s in c.pool.nodes()}
        keys = [net.node(h).pubkey_ed25519 for h in hops]
        for p in list(c.paths.paths):
            c.paths.remove(p)
        c.paths.add(OnionPath(hops=[by_key[k] for k in keys]))
        records.clear()
        for _ in range(probes):
            try:
                await c.get_swarm(account, refresh=True)
            except ClientError:
                pass
    out = []
    for r in records:
        for a in r.attempts:
            if [h["ed25519"] for h in (a.path or [])] == keys:
                out.append({"ok": bool(a.ok), "ms": round(a.elapsed_ms, 1),
                            "error_kind": a.error_kind})
    return out


def measure(net: Testnet, p: dict[str, Any], probes: int = PROBES) -> dict[str, Any]:
    return {"path": asyncio.run(timings(net, p["path"], p["account"], probes)),
            "control": asyncio.run(timings(net, p["control"], p["account"]))}


def node_connections(net: Testnet) -> dict[str, int]:
    """Established TCP connections, by where they go: a link proxy's OxenMQ address, a node's
    advertised OxenMQ address (from Toxiproxy = the link proxies forwarding, or from anything else
    = a node bypassing its link proxies)."""
    text = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True,
                          text=True).stdout
    advertised = {f"{n.public_ip}:{n.omq_port}" for n in net.state.nodes}
    link_omq = {f"{net._link_ip(a.name, b.name)}:{b.omq_port}"
                for a in net.state.nodes for b in net.state.nodes if a is not b}
    toxiproxy = f"pid={net.state.toxiproxy_pid},"
    out = {"to_link_proxies": 0, "to_advertised_from_toxiproxy": 0, "to_advertised_bypassing": 0}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        peer = cols[3]
        if peer in link_omq:
            out["to_link_proxies"] += 1
        elif peer in advertised:
            key = "from_toxiproxy" if toxiproxy in line else "bypassing"
            out[f"to_advertised_{key}"] += 1
    return out


def recovered(net: Testnet, p: dict[str, Any], timeout: float) -> float | None:
    """Seconds until an onion request over PATH works again (None: not within ``timeout``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = asyncio.run(timings(net, p["path"], p["account"], probes=1))
        if got and got[0]["ok"]:
            return round(time.monotonic() - t0, 2)
    return None


def scenario(binary: Path, work: Path, report: dict[str, Any], backend: str = "process",
             name: str = NAME) -> None:
    """The whole run (also used by tests/e2e/test_real_links_docker.py with ``backend="docker"``,
    where the connections of the containers are not the host's to count)."""
    home = work / "home"
    t0 = time.monotonic()
    up = cli(work, "up", "-n", name, "--nodes", f"{NODES}:oxen-storage={binary}",
             "--backend", backend, "--json", "--timeout", "300")
    report["bring_up_s"] = round(time.monotonic() - t0, 2)
    must(up, "testnet up")
    os.environ["SESSION_TESTNET_HOME"] = str(home)
    net = Testnet.attach(name)
    p = plan(net)
    report["plan"] = p
    a, b = p["path"][0], p["path"][1]
    report["peer_ips"] = {n["name"]: n["peer_ips"]
                          for n in net.seed_admin("oxend", method="GET")["nodes"]}
    report["timings"] = {"before": measure(net, p)}
    report["connections"] = node_connections(net) if backend == "process" else None
    with Faults(net) as faults:
        lat = faults.latency(a, LATENCY_MS, link=b)
        report["latency_toxics"] = sorted(f"{proxy}/{toxic}" for proxy, toxic in lat.toxics)
        report["timings"]["link_latency"] = measure(net, p)
        lat.remove()
        cut = faults.partition(a, b)
        proxies = faults.toxiproxy.proxies()
        report["partition_disabled"] = sorted(n for n, px in proxies.items() if not px.enabled)
        # each probe over the cut path waits for the client's timeout: two are enough
        report["timings"]["partition"] = measure(net, p, probes=2)
        t1 = time.monotonic()
        faults.heal()
        report["heal_s"] = round(time.monotonic() - t1, 2)
        report["recovered_s"] = recovered(net, p, timeout=30)
        report["cut_removed"] = cut.removed
        report["timings"]["after_heal"] = measure(net, p)
        report["link_proxies_after_heal"] = {
            n: {"enabled": px.enabled, "toxics": len(px.toxics)}
            for n, px in faults.toxiproxy.proxies().items() if "->" in n}
    logs = node_logs(home, name)
    report["log_facts"] = {
        name: {"active": "Storage server is now active" in text,
               "bootstrap_lines": [ln[:200] for ln in text.splitlines()
                                   if any(m in ln.lower() for m in BOOTSTRAP_MARKS)]}
        for name, text in logs.items()}
    report["links_at_end"] = links()
    must(cli(work, "down", "-n", name), "testnet down")


def main(binary: Path, work: Path) -> int:
    report: dict[str, Any] = {"links": links()}
    try:
        if report["links"] != ["lo"]:
            report["error"] = f"refusing to run: interfaces {report['links']}, not just lo"
            return 2
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        scenario(binary, work, report)
    except Exception as exc:  # noqa: BLE001 - reported to the test, with the logs
        report["error"] = repr(exc)
        report["logs_tail"] = {k: v.splitlines()[-15:] for k, v in node_logs(work / "home", NAME).items()}
        cli(work, "down", "-n", NAME)
    finally:
        (work / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
