"""`testnet bench`: speed and memory of a testnet, measured, with targets.

Measured on a fresh testnet of the chosen backend:

- ``up_s``: wall time of ``Testnet.up`` until every node is ready (target: ≤ 15 s warm for the
  default docker topology on 2 cores); ``down_s``.
- ``send``: N Session messages sent through 3-hop onion paths (latency p50/p95, messages/s).
- ``delivery``: time from the start of a send until the recipient's poll returns it (p50/p95).
- ``direct_store``: unauthenticated storage RPC ``store`` straight to a node (p50/p95).
- ``memory``: resident memory of every node (MiB: max and total).
- ``toxiproxy``: the proxy's added latency and throughput (nodes.toxiproxy.bench).

Results are printed as a table, or JSON with ``--json``; ``-o/--output FILE`` also writes the JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from harness.backends.registry import BACKENDS, default_backend
from harness.cliutil import friendly_errors, json_option, output_option
from harness.naming import unique_name
from harness.network import Testnet
from harness.progress import progress
from harness.topology import Topology

TARGETS = {"up_s": 15.0}


@dataclass
class Stats:
    samples_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        s = sorted(self.samples_ms)
        if not s:
            return {"n": 0}
        return {"n": len(s), "p50_ms": round(statistics.median(s), 2),
                "p95_ms": round(s[min(len(s) - 1, int(0.95 * len(s)))], 2),
                "max_ms": round(s[-1], 2)}


def _pctl(values: list[float]) -> dict[str, float]:
    return Stats(values).summary()


async def _messaging(net: Testnet, messages: int) -> dict[str, Any]:
    from harness.client import Account, SessionClient

    send = Stats()
    delivery: list[float] = []
    started: dict[str, float] = {}
    async with (SessionClient(net.seed_url, Account.generate()) as alice,
                SessionClient(net.seed_url, Account.generate()) as bob):
        await alice.bootstrap()
        await bob.bootstrap()
        t_all = time.perf_counter()
        for i in range(messages):
            body = f"bench {i}"
            started[body] = time.perf_counter()
            t0 = time.perf_counter()
            await alice.send(bob.session_id, body)
            send.samples_ms.append((time.perf_counter() - t0) * 1000)
        sent_s = time.perf_counter() - t_all
        got: set[str] = set()
        deadline = time.monotonic() + 60
        while len(got) < messages and time.monotonic() < deadline:
            for m in await bob.receive():
                if m.body in started and m.body not in got:
                    got.add(m.body)
                    delivery.append((time.perf_counter() - started[m.body]) * 1000)
    return {"send": {**send.summary(), "msgs_per_s": round(messages / sent_s, 1)},
            "delivery": {**_pctl(delivery), "delivered": len(got), "sent": messages}}


async def _direct_store(net: Testnet, count: int) -> dict[str, Any]:
    from harness import rpc
    from nodes.protocol.keys import Identity

    node = net.nodes[0]
    samples = []
    async with rpc.new_session() as s:
        ident = Identity.generate()
        for i in range(count):
            # store on any node: the swarm of this account may differ, so pick it via 421
            params = {"pubkey": ident.session_id, "ttl": 60_000,
                      "timestamp": int(time.time() * 1000),
                      "data": base64.b64encode(f"direct {i}".encode()).decode()}
            t0 = time.perf_counter()
            status, body = await rpc.storage_rpc(s, node.storage_url, "store", params)
            if status == 421 and isinstance(body, dict):
                snode = body["snodes"][0]
                node_url = f"https://{snode['ip']}:{snode['port_https']}"
                t0 = time.perf_counter()
                status, body = await rpc.storage_rpc(s, node_url, "store", params)
            samples.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"direct store failed: HTTP {status}: {body!r}")
    return _pctl(samples)


def _memory(net: Testnet) -> dict[str, Any]:
    rss = {}
    for n in net.nodes:
        pid = n.runtime.get("pid")
        if pid:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss[n.name] = int(line.split()[1]) / 1024
            except OSError:
                continue
        elif n.runtime.get("container"):
            try:
                from docker.client import from_env

                stats = from_env().containers.get(n.runtime["container"]).stats(stream=False)
                if isinstance(stats, dict):  # stream=False: one snapshot
                    rss[n.name] = stats["memory_stats"].get("usage", 0) / (1024 * 1024)
            except Exception:
                continue
    if not rss:
        return {}
    return {"node_max_mib": round(max(rss.values()), 1),
            "nodes_total_mib": round(sum(rss.values()), 1)}


def run_bench(backend: str, topology: Topology, messages: int, report: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": backend, "nodes": topology.node_count,
                              "swarms": topology.swarms, "cpus": os.cpu_count()}
    report(f"bench: starting a {topology.node_count}-node {backend} testnet")
    t0 = time.perf_counter()
    net = Testnet.up(topology, backend=backend, report=report)
    result["up_s"] = round(time.perf_counter() - t0, 2)
    try:
        report(f"bench: {messages} onion-routed messages")
        result.update(asyncio.run(_messaging(net, messages)))
        report("bench: direct stores")
        result["direct_store"] = asyncio.run(_direct_store(net, messages))
        result["memory"] = _memory(net)
    finally:
        t1 = time.perf_counter()
        net.down()
        result["down_s"] = round(time.perf_counter() - t1, 2)
    report("bench: Toxiproxy overhead")
    from nodes.toxiproxy.bench import run_bench as proxy_bench

    result["toxiproxy"] = proxy_bench(echoes=500, transfer_mb=20, repeats=1)
    result["targets"] = {k: {"target": v, "met": result.get(k, float("inf")) <= v}
                         for k, v in TARGETS.items()}
    return result


@click.command("bench")
@click.option("--backend", "-b", type=click.Choice(BACKENDS), default=default_backend,
              show_default="process (env SESSION_TESTNET_BACKEND)")
@click.option("--swarms", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--swarm-size", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--messages", type=click.IntRange(min=1), default=30, show_default=True,
              help="Messages to send (and direct stores).")
@json_option('{"backend", "nodes", "swarms", "cpus", "up_s", "down_s", "send", "delivery", '
             '"direct_store", "memory", "toxiproxy", "targets"}')
@output_option("Also write the JSON result to FILE.")
@friendly_errors
def bench(backend: str, swarms: int, swarm_size: int, messages: int, as_json: bool,
          output: str | None) -> None:
    """Measure up time, message latency, delivery, memory and proxy overhead on a new testnet
    (removed afterwards)."""
    topology = Topology(name=unique_name("bench"), swarms=swarms, swarm_size=swarm_size)
    with progress() as report:
        result = run_bench(backend, topology, messages, report)
    text = json.dumps(result, indent=2)
    if output:
        Path(output).write_text(text + "\n")
    if as_json:
        click.echo(text)
        return
    click.echo(f"backend {backend}: {result['nodes']} nodes in {result['swarms']} swarms, "
               f"{result['cpus']} CPUs")
    up_t = result["targets"]["up_s"]
    click.echo(f"  up            {result['up_s']:.2f} s  (target ≤ {up_t['target']} s: "
               f"{'met' if up_t['met'] else 'MISSED'})")
    click.echo(f"  down          {result['down_s']:.2f} s")
    for key in ("send", "delivery", "direct_store"):
        r = result[key]
        extra = f"  {r['msgs_per_s']} msg/s" if "msgs_per_s" in r else ""
        click.echo(f"  {key:<13} p50 {r.get('p50_ms', '-')} ms  p95 {r.get('p95_ms', '-')} ms{extra}")
    if result["memory"]:
        m = result["memory"]
        click.echo(f"  memory        {m['node_max_mib']} MiB max per node, "
                   f"{m['nodes_total_mib']} MiB all nodes")
    tp = result["toxiproxy"]
    click.echo(f"  toxiproxy     +{tp['added_rtt_us']['median']} µs median round trip; "
               f"throughput {tp['throughput_mb_s']['proxy']['download']} MB/s down, "
               f"{tp['throughput_mb_s']['proxy']['upload']} MB/s up through the proxy")


commands = [bench]
