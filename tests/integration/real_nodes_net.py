"""A testnet of real storage servers brought up by the harness CLI, measured from inside a
loopback-only network namespace.

Run by tests/integration/test_real_nodes.py as
``unshare --net --pid --fork --kill-child --mount-proc python3 real_nodes_net.py BINARY WORKDIR``.
It refuses to run where the namespace has any interface but ``lo``. It runs the user's path:
``testnet up --nodes 10:oxen-storage=BINARY --backend process --json``, ``status``, ``account new``,
``send``/``recv``; then a latency fault on one node through the Faults Python API, kill + start of
a node, ``testnet down``; and writes every fact to WORKDIR/report.json for the test to assert on.
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

from harness import rpc  # noqa: E402
from harness.client import Account, SessionClient  # noqa: E402
from harness.faults import Faults  # noqa: E402
from harness.network import Testnet  # noqa: E402

NAME = "realnet"
NODES = 10
LATENCY_MS = 400
FAULTED = "sn03"
CONTROL = "sn04"
CHURNED = "sn05"
PAUSED = "sn06"
PROBES = 5
BOOTSTRAP_MARKS = ("bootstrap", "seed node", "public.loki.foundation", "seed1.", "seed2.", "seed3.")


def links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if line.strip()]


def cli(work: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SESSION_TESTNET_HOME": str(work / "home")}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=timeout)


def must(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


async def info_timings(url: str) -> list[float]:
    """Wall time (ms) of PROBES direct ``info`` requests to a node, each on a new connection."""
    out = []
    for _ in range(PROBES):
        async with rpc.new_session() as s:
            t0 = time.monotonic()
            status, _ = await rpc.storage_rpc(s, url, "info", {})
            out.append(round((time.monotonic() - t0) * 1000, 1) if status == 200 else -1.0)
    return out


async def answers(url: str) -> bool:
    """Whether the node answers ``info`` within 3 s."""
    async with rpc.new_session(rpc.aiohttp.ClientTimeout(total=3)) as s:
        try:
            status, _ = await rpc.storage_rpc(s, url, "info", {})
        except rpc.RpcError:
            return False
    return status == 200


async def onion_timings(net: Testnet) -> dict[str, Any]:
    """The Session client's own records: onion requests whose path (or destination) holds the
    faulted node take the latency, the others do not. The faulted node is the guard of the
    client's first path (reached through its HTTPS proxy); a node-level fault of the Faults API
    acts on both of a real node's proxies (HTTPS and OxenMQ)."""
    records: list[Any] = []
    account = Account.generate()
    async with SessionClient(net.seed_url, account, sink=records, test_guards=False) as c:
        await c.get_swarm(account.session_id, refresh=True)
        first = [a for r in records for a in r.attempts if a.path]
        hops = [h["ed25519"] for h in first[-1].path]
        by_key = {n.pubkey_ed25519: n for n in net.state.nodes}
        victim = by_key[hops[0]]
        with Faults(net) as faults:
            fault = faults.latency(victim.name, LATENCY_MS)
            proxies_with_toxic = sorted(p for p, _ in fault.toxics)
            records.clear()
            for _ in range(12):
                await c.get_swarm(account.session_id, refresh=True)
    with_victim: list[tuple[str, float]] = []
    without: list[float] = []
    for r in records:
        for a in r.attempts:
            if not a.path or not a.ok:
                continue
            hops = [h["ed25519"] for h in a.path]
            dest = (a.destination or {}).get("ed25519")
            ms = round(a.elapsed_ms, 1)
            if victim.pubkey_ed25519 in hops:
                with_victim.append((f"hop{hops.index(victim.pubkey_ed25519)}", ms))
            elif victim.pubkey_ed25519 == dest:
                with_victim.append(("destination", ms))
            else:
                without.append(ms)
    return {"victim": victim.name, "victim_hop": 0, "with_victim_ms": with_victim,
            "without_victim_ms": without, "proxies_with_toxic": proxies_with_toxic}


def established_omq_peers(net: Testnet) -> dict[str, int]:
    """Established TCP connections to the nodes' advertised OxenMQ addresses (their proxies),
    and to their OxenMQ listeners from Toxiproxy and from anything else (a bypass), as the
    kernel sees them (``ss``)."""
    text = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True,
                          text=True).stdout
    proxied = {f"{n.public_ip}:{n.omq_port}" for n in net.state.nodes}
    direct = {f"{n.bind_ip}:{n.omq_bind_port}" for n in net.state.nodes}
    toxiproxy = f"pid={net.state.toxiproxy_pid},"
    out = {"to_proxies": 0, "to_listeners_from_toxiproxy": 0, "to_listeners_bypassing": 0}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        peer = cols[3]
        if peer in proxied:
            out["to_proxies"] += 1
        elif peer in direct:
            key = "from_toxiproxy" if toxiproxy in line else "bypassing"
            out[f"to_listeners_{key}"] += 1
    return out


def node_logs(home: Path, name: str = NAME) -> dict[str, str]:
    logs = home / "networks" / name / "logs"
    return {p.stem: p.read_text(errors="replace") for p in sorted(logs.glob("sn*.stderr"))}


def leftovers(home: Path) -> dict[str, Any]:
    procs = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "oxen-storage" in cmd or "nodes." in cmd:
                procs.append(cmd.strip()[:200])
    return {"processes": procs, "state_dirs": sorted(str(p) for p in (home / "networks").glob("*"))
            if (home / "networks").exists() else []}


def scenario(binary: Path, work: Path, report: dict[str, Any]) -> None:
    home = work / "home"
    t0 = time.monotonic()
    up = cli(work, "up", "-n", NAME, "--nodes", f"{NODES}:oxen-storage={binary}",
             "--backend", "process", "--json", "--timeout", "180")
    report["bring_up_s"] = round(time.monotonic() - t0, 2)
    report["up"] = json.loads(must(up, "testnet up"))
    report["status"] = json.loads(must(cli(work, "status", "-n", NAME, "--json"), "status"))

    for who in ("alice", "bob"):
        must(cli(work, "account", "new", "-o", str(work / f"{who}.json")), "account new")
    bob = json.loads((work / "bob.json").read_text())["session_id"]
    t1 = time.monotonic()
    sent = must(cli(work, "send", "--name", NAME, "--account", str(work / "alice.json"), "--to", bob,
                    "hello over real nodes", "--record"), "send")
    report["send_s"] = round(time.monotonic() - t1, 2)
    report["send_record"] = json.loads(sent)
    t1 = time.monotonic()
    got = must(cli(work, "recv", "--name", NAME, "--account", str(work / "bob.json"),
                   "--timeout", "30", "--json"), "recv")
    report["recv_s"] = round(time.monotonic() - t1, 2)
    report["received"] = json.loads(got)

    os.environ["SESSION_TESTNET_HOME"] = str(home)
    net = Testnet.attach(NAME)
    report["omq_connections"] = established_omq_peers(net)
    deadline = time.monotonic() + 60  # reachability tests (HTTPS, OxenMQ, QUIC) run ~every 10 s
    while True:
        oxend = net.seed_admin("oxend", method="GET")
        reported = all(n["peer_reports_sent"]["passed"] + n["peer_reports_sent"]["failed"] > 0
                       for n in oxend["nodes"])
        if reported or time.monotonic() > deadline:
            break
        time.sleep(1)
    report["oxend"] = {n["name"]: {k: n[k] for k in ("status", "pings", "peer_reports_sent",
                                                     "peer_reports_received", "first_list_held")}
                       for n in oxend["nodes"]}
    faulted, control = net.node(FAULTED), net.node(CONTROL)
    timings: dict[str, Any] = {"before": {
        FAULTED: asyncio.run(info_timings(faulted.storage_url)),
        CONTROL: asyncio.run(info_timings(control.storage_url))}}
    with Faults(net) as faults:
        faults.latency(FAULTED, LATENCY_MS)
        timings["during"] = {FAULTED: asyncio.run(info_timings(faulted.storage_url)),
                             CONTROL: asyncio.run(info_timings(control.storage_url))}
    timings["after"] = {FAULTED: asyncio.run(info_timings(faulted.storage_url))}
    report["timings_ms"] = timings

    report["onion_timings"] = asyncio.run(onion_timings(net))

    churn: dict[str, Any] = {}
    net.kill(CHURNED)
    churn["running_after_kill"] = net.backend.is_running(net.state, CHURNED)
    t1 = time.monotonic()
    net.start(CHURNED)
    net.wait_ready(timeout=90)
    churn["ready_after_start_s"] = round(time.monotonic() - t1, 2)
    churn["running_after_start"] = net.backend.is_running(net.state, CHURNED)
    # pause freezes the process (SIGSTOP): it holds its sockets but answers nothing
    paused = net.node(PAUSED)
    net.pause(PAUSED)
    churn["answers_while_paused"] = asyncio.run(answers(paused.storage_url))
    net.unpause(PAUSED)
    churn["answers_after_unpause"] = asyncio.run(answers(paused.storage_url))
    report["churn"] = churn
    # a message stored before the kill is still there (SQLite in the data dir survives)
    got = must(cli(work, "recv", "--name", NAME, "--account", str(work / "bob.json"), "--json"),
               "recv after churn")
    report["received_after_churn"] = json.loads(got)

    logs = node_logs(home)
    report["log_facts"] = {
        name: {"initialized": [ln[-80:] for ln in text.splitlines() if "Initialized from oxend" in ln],
               "active": "Storage server is now active" in text,
               "bootstrap_lines": [ln[:200] for ln in text.splitlines()
                                   if any(m in ln.lower() for m in BOOTSTRAP_MARKS)]}
        for name, text in logs.items()}
    report["links_at_end"] = links()
    t1 = time.monotonic()
    must(cli(work, "down", "-n", NAME), "testnet down")
    report["down_s"] = round(time.monotonic() - t1, 2)
    report["leftovers"] = leftovers(home)


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
        report["logs_tail"] = {k: v.splitlines()[-15:] for k, v in node_logs(work / "home").items()}
        cli(work, "down", "-n", NAME)
    finally:
        (work / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
