"""One bench run: the same :class:`~harness.bench.load.Load` on one testnet, or on two testnets
one after the other (never at once: they would share the cores), and the ratios of their figures.
The load runs on uvloop when it is installed (as the nodes do; ``SESSION_TESTNET_UVLOOP=0``: the
stock loop), so that the load generator, on the same cores, takes less from what it measures.

The JSON shape (``testnet bench --json``) is one object whose top-level keys are documented in
:data:`TOP_LEVEL_KEYS`; a testnet's own figures are :data:`TESTNET_KEYS`. New figures are new
keys: no key changes meaning.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from harness.bench.figures import ratios
from harness.bench.load import Load, direct_store, messaging, retrieve_throughput, store_throughput
from harness.bench.memory import node_memory
from harness.network import Testnet
from harness.topology import Topology
from nodes.common.eventloop import run as run_load

TARGETS = {"up_s": 15.0}

#: the figures of one testnet (the top level holds those of the testnet under bench)
TESTNET_KEYS = ("label", "kinds", "backend", "nodes", "swarms", "proxies", "up_s", "down_s", "send",
                "delivery", "direct_store", "store_throughput", "retrieve_throughput", "memory")
#: every top-level key: the testnet's figures, then the run's own, then (with --versus) the
#: other testnet's figures and the ratios this / versus
TOP_LEVEL_KEYS = (*TESTNET_KEYS, "cpus", "load", "toxiproxy", "targets", "versus", "ratios")

Reporter = Callable[[str], None]
#: more measurements on the bench's testnet, after the load and before it goes down
Extra = Callable[[Testnet], None]


def label(topology: Topology) -> str:
    """``python`` / ``oxen-storage``: what the testnet's nodes are."""
    return "+".join(topology.kinds)


def bench_testnet(backend: str, topology: Topology, load: Load, report: Reporter,
                  extra: Extra | None = None) -> dict[str, Any]:
    """Bring ``topology`` up, put ``load`` on it, measure (then ``extra(net)``), and take it
    down (always)."""
    what = f"{topology.node_count}-node {label(topology)} testnet ({backend})"
    result: dict[str, Any] = {"label": label(topology), "kinds": topology.kinds, "backend": backend,
                              "nodes": topology.node_count, "swarms": topology.swarms,
                              "proxies": topology.proxies}
    report(f"bench: starting a {what}")
    t0 = time.perf_counter()
    net = Testnet.up(topology, backend=backend, report=report)
    result["up_s"] = round(time.perf_counter() - t0, 2)
    try:
        report(f"bench: {load.messages} onion-routed messages on the {what}")
        result.update(run_load(messaging(net, load.messages)))
        report(f"bench: {load.messages} direct stores, one at a time")
        result["direct_store"] = run_load(direct_store(net, load.messages))
        report(f"bench: {load.stores} direct stores and {load.retrieves} retrieves, "
               f"{load.concurrency} at a time")
        stores, accounts = run_load(store_throughput(net, load))
        result["store_throughput"] = stores
        result["retrieve_throughput"] = run_load(retrieve_throughput(net, load, accounts))
        result["memory"] = node_memory(net)
        if extra is not None:
            extra(net)
    finally:
        t1 = time.perf_counter()
        net.down()
        result["down_s"] = round(time.perf_counter() - t1, 2)
    return result


def run_bench(backend: str, topology: Topology, load: Load, report: Reporter,
              versus: Topology | None = None, extra: Extra | None = None) -> dict[str, Any]:
    """The bench of ``topology`` (top level) and, given ``versus``, of that testnet too
    (``versus``) with ``ratios`` = this / versus for every figure of
    :data:`~harness.bench.figures.RATIO_FIGURES`. ``extra`` runs on the first testnet only."""
    result = bench_testnet(backend, topology, load, report, extra)
    result.update(cpus=os.cpu_count(), load=load.to_dict())
    if versus is not None:
        result["versus"] = bench_testnet(backend, versus, load, report)
        result["ratios"] = ratios(result, result["versus"])
    report("bench: Toxiproxy overhead")
    from nodes.toxiproxy.bench import run_bench as proxy_bench

    result["toxiproxy"] = proxy_bench(echoes=500, transfer_mb=20, repeats=1)
    result["targets"] = {k: {"target": v, "met": result.get(k, float("inf")) <= v}
                         for k, v in TARGETS.items()}
    return result
