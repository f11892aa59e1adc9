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
from dataclasses import replace
from typing import Any

from harness.bench.figures import RATIO_FIGURES, figure, median_ratios, ratios, versus_targets
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
#: other testnet's figures and the ratios this / versus, then (with --rounds > 1) each round's
#: figures and ratios and the median of each ratio
TOP_LEVEL_KEYS = (*TESTNET_KEYS, "cpus", "load", "toxiproxy", "targets", "versus", "ratios",
                  "rounds", "ratios_median")

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
              versus: Topology | None = None, extra: Extra | None = None,
              rounds: int = 1) -> dict[str, Any]:
    """The bench of ``topology`` (top level) and, given ``versus``, of that testnet too
    (``versus``) with ``ratios`` = this / versus for every figure of
    :data:`~harness.bench.figures.RATIO_FIGURES`. ``extra`` runs on the first testnet only.

    With ``versus`` and ``rounds`` > 1 the two are benched ``rounds`` times, alternating (this,
    versus, this, versus, …), each time on new testnets: the top level and ``versus`` hold the
    first round, ``rounds`` every round's two figures and ratios, ``ratios_median`` the median of
    each ratio. On a machine whose speed drifts from one minute to the next, a ratio of two
    testnets measured one after the other moves with it; the median of paired rounds much less.
    Where ``versus`` is real storage servers and this testnet ours, ``targets`` also judges the
    ratios (the median, with rounds) against the goals of docs/nodes.md."""
    if rounds > 1 and versus is None:
        raise ValueError("rounds > 1 alternate two testnets: give versus")
    result = bench_testnet(backend, topology, load, report, extra)
    result.update(cpus=os.cpu_count(), load=load.to_dict())
    judged: dict[str, float | None] | None = None
    if versus is not None:
        result["versus"] = bench_testnet(backend, versus, load, report)
        result["ratios"] = judged = ratios(result, result["versus"])
        if rounds > 1:
            per_round = [_round_figures(result, result["versus"])]
            for n in range(2, rounds + 1):
                report(f"bench: round {n} of {rounds}")
                ours_n = bench_testnet(backend, replace(topology, name=f"{topology.name}-r{n}"), load, report)
                theirs_n = bench_testnet(backend, replace(versus, name=f"{versus.name}-r{n}"), load, report)
                per_round.append(_round_figures(ours_n, theirs_n))
            result["rounds"] = per_round
            result["ratios_median"] = judged = median_ratios([r["ratios"] for r in per_round])
    report("bench: Toxiproxy overhead")
    from nodes.toxiproxy.bench import run_bench as proxy_bench

    result["toxiproxy"] = proxy_bench(echoes=500, transfer_mb=20, repeats=1)
    result["targets"] = {k: {"target": v, "met": result.get(k, float("inf")) <= v}
                         for k, v in TARGETS.items()}
    if judged is not None and versus is not None and _against_the_real_server(topology, versus):
        result["targets"].update(versus_targets(judged, rounds=rounds))
    return result


def _round_figures(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """One round of a comparison: ``{"figures": {name: [this, versus]}, "ratios": {…}}``."""
    return {"figures": {name: [figure(ours, path), figure(theirs, path)]
                        for name, path in RATIO_FIGURES.items()},
            "ratios": ratios(ours, theirs)}


def _against_the_real_server(ours: Topology, versus: Topology) -> bool:
    """Whether the comparison is the goal's: our python nodes against real storage servers."""
    return set(ours.kinds) == {"python"} and set(versus.kinds) == {"oxen-storage"}
