"""``testnet bench``: options, the topologies they make, and the table."""

from __future__ import annotations

from typing import Any

import click

from harness.backends.registry import BACKENDS, default_backend
from harness.bench.figures import figure
from harness.bench.load import Load
from harness.bench.run import run_bench
from harness.cliutil import emit_result, friendly_errors, json_option, output_option
from harness.naming import unique_name
from harness.progress import progress
from harness.topology import NodeGroup, Topology, TopologyError

JSON_SHAPE = (
    '{"label", "kinds", "backend", "nodes", "swarms", "proxies", "up_s", "down_s", "send", '
    '"delivery", "direct_store", "store_throughput", "retrieve_throughput", "memory", "cpus", '
    '"load", "toxiproxy", "targets"} and, with --versus, "versus" (the other testnet\'s figures, '
    'same keys as the first line) and "ratios" ({"up_s", "store_per_s", "retrieve_per_s", '
    '"onion_p50_ms", "onion_p99_ms", "memory_node_median_mib", "memory_node_max_mib", '
    '"memory_nodes_total_mib"}: this testnet / the versus testnet, null where not measured); '
    'with --rounds N > 1 also "rounds" (each round: {"figures": {ratio name: [this, versus]}, '
    '"ratios"}) and "ratios_median"; against real storage servers "targets" adds '
    '"ratios.store_per_s" and "ratios.onion_p50_ms" ({"op", "target", "met", "of"}). '
    'Latencies: {"n", "p50_ms", "p95_ms", "p99_ms", "max_ms"}; throughputs add "requests", "ok", '
    '"errors", "concurrency", "wall_s", "per_s"; memory: {"node_max_mib", "nodes_total_mib", '
    '"node_median_mib", "per_node_mib", "source"}. With --quick also "bringup_s", "compose_up_s", '
    '"onion_roundtrip_p50_ms", "onion_roundtrip_p99_ms", "onion_stores_per_s", '
    '"direct_stores_per_s", "delivery_rate_under_churn" (null where not measured), "targets" '
    '({"op", "target", "met"[, "reason"]} for each) and "quick" (backends, reasons, details)')

#: table rows: title, path of keys in a testnet's figures, unit, digits
ROWS: tuple[tuple[str, tuple[str, ...], str, int], ...] = (
    ("up", ("up_s",), "s", 2),
    ("down", ("down_s",), "s", 2),
    ("store throughput", ("store_throughput", "per_s"), "/s", 1),
    ("  store p50", ("store_throughput", "p50_ms"), "ms", 1),
    ("  store p99", ("store_throughput", "p99_ms"), "ms", 1),
    ("retrieve throughput", ("retrieve_throughput", "per_s"), "/s", 1),
    ("  retrieve p50", ("retrieve_throughput", "p50_ms"), "ms", 1),
    ("  retrieve p99", ("retrieve_throughput", "p99_ms"), "ms", 1),
    ("onion store p50", ("send", "p50_ms"), "ms", 1),
    ("onion store p99", ("send", "p99_ms"), "ms", 1),
    ("delivery p50", ("delivery", "p50_ms"), "ms", 1),
    ("direct store p50", ("direct_store", "p50_ms"), "ms", 1),
    ("memory per node (median)", ("memory", "node_median_mib"), "MiB", 1),
    ("memory per node (max)", ("memory", "node_max_mib"), "MiB", 1),
    ("memory all nodes", ("memory", "nodes_total_mib"), "MiB", 1),
)
#: the table row of each ratio
RATIO_ROWS = {("up_s",): "up_s", ("store_throughput", "per_s"): "store_per_s",
              ("retrieve_throughput", "per_s"): "retrieve_per_s", ("send", "p50_ms"): "onion_p50_ms",
              ("send", "p99_ms"): "onion_p99_ms", ("memory", "node_median_mib"): "memory_node_median_mib",
              ("memory", "node_max_mib"): "memory_node_max_mib",
              ("memory", "nodes_total_mib"): "memory_nodes_total_mib"}


def topologies(swarms: int | None, swarm_size: int, node_groups: tuple[str, ...],
               versus_groups: tuple[str, ...], proxies: bool = True) -> tuple[Topology, Topology | None]:
    """The testnet under bench and the one to compare it with (None without ``--versus``).
    With ``--versus`` and no ``--nodes``, ours has as many python nodes; the two must have as
    many nodes (and so, with one ``--swarm-size``, as many swarms)."""
    if node_groups and swarms is not None:
        raise click.UsageError("--swarms follows from --nodes and --swarm-size: give one or the other")
    try:
        theirs = [NodeGroup.parse(g) for g in versus_groups]
        if theirs and not node_groups:
            node_groups = (f"{sum(g.count for g in theirs)}:python",)
        if node_groups:
            ours = Topology.from_dict({"name": unique_name("bench"), "swarm_size": swarm_size,
                                       "nodes": list(node_groups), "proxies": proxies})
        else:
            ours = Topology(name=unique_name("bench"), swarms=swarms or 2, swarm_size=swarm_size,
                            proxies=proxies)
        if not theirs:
            return ours, None
        other = Topology.from_dict({"name": unique_name("bench"), "swarm_size": swarm_size,
                                    "nodes": theirs, "seed": ours.seed, "proxies": proxies})
    except TopologyError as e:
        raise click.UsageError(str(e)) from None
    if other.node_count != ours.node_count:
        raise click.UsageError(f"compare at equal node counts: --nodes gives {ours.node_count} nodes, "
                               f"--versus {other.node_count}")
    return ours, other


def _cell(value: float | None, unit: str, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f} {unit}"


def _heading(fig: dict[str, Any]) -> str:
    return f"{fig['label']} ×{fig['nodes']} ({fig['swarms']} swarms)"


def render(result: dict[str, Any]) -> list[str]:
    """The readable table of a result."""
    sides = [result] + ([result["versus"]] if "versus" in result else [])
    load = result["load"]
    proxied = "behind Toxiproxy" if all(s["proxies"] for s in sides) else "without Toxiproxy"
    lines = [f"backend {result['backend']}, {result['cpus']} CPUs, nodes {proxied}; load: "
             f"{load['messages']} onion stores, {load['stores']} stores and {load['retrieves']} "
             f"retrieves {load['concurrency']} at a time"]
    head = f"  {'':<26}" + "".join(f"{_heading(s):>30}" for s in sides)
    lines.append(head + (f"{'ratio':>10}" if len(sides) > 1 else ""))
    for title, path, unit, digits in ROWS:
        row = f"  {title:<26}" + "".join(f"{_cell(figure(s, path), unit, digits):>30}" for s in sides)
        if len(sides) > 1:
            r = result["ratios"].get(RATIO_ROWS.get(path, ""))
            row += f"{'' if r is None else f'{r:.2f}':>10}"
        lines.append(row)
    for s in sides:
        for key in ("store_throughput", "retrieve_throughput"):
            if s[key]["errors"]:
                lines.append(f"  {s['label']}: {key} errors {s[key]['errors']}")
        d = s["delivery"]
        if d["delivered"] < d["sent"]:
            lines.append(f"  {s['label']}: only {d['delivered']} of {d['sent']} messages delivered")
    if len(sides) > 1:
        lines.append("  ratio = first / second; above 1: larger (throughput: faster; time, memory: "
                     "slower, bigger)")
    if "ratios_median" in result:
        lines.extend(_rounds_lines(result))
    up_t = result["targets"]["up_s"]
    lines.append(f"  up target ≤ {up_t['target']} s: {'met' if up_t['met'] else 'MISSED'}")
    for name, t in result["targets"].items():
        if name.startswith("ratios."):
            verdict = "not measured" if t["met"] is None else "met" if t["met"] else "MISSED"
            lines.append(f"  goal {name.removeprefix('ratios.')} {t['op']} {t['target']} "
                         f"({t['of']}): {verdict}")
    tp = result["toxiproxy"]
    lines.append(f"  toxiproxy +{tp['added_rtt_us']['median']} µs median round trip; throughput "
                 f"{tp['throughput_mb_s']['proxy']['download']} MB/s down, "
                 f"{tp['throughput_mb_s']['proxy']['upload']} MB/s up through the proxy")
    return lines


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rounds_lines(result: dict[str, Any]) -> list[str]:
    """Each round's ratio and their median, for the figures of the goals."""
    rounds = result["rounds"]
    lines = [f"  {len(rounds)} rounds, alternating; ratio in each round → median:"]
    for name in ("store_per_s", "onion_p50_ms", "onion_p99_ms"):
        each = " ".join(_ratio_text(r["ratios"].get(name)) for r in rounds)
        lines.append(f"    {name:<14} {each} → {_ratio_text(result['ratios_median'].get(name))}")
    return lines


@click.command("bench")
@click.option("--backend", "-b", type=click.Choice(BACKENDS), default=default_backend,
              show_default="process (env SESSION_TESTNET_BACKEND)")
@click.option("--swarms", type=click.IntRange(min=1), default=None,
              help="Swarms of our nodes without --nodes [default: 2].")
@click.option("--swarm-size", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--nodes", "node_groups", multiple=True, metavar="N[:KIND[=PATH]]",
              help="The testnet under bench, as for 'testnet up --nodes' (repeatable) "
                   "[default: --swarms × --swarm-size python nodes; with --versus as many as it has].")
@click.option("--versus", "versus_groups", multiple=True, metavar="N[:KIND[=PATH]]",
              help="Also bench this testnet (same grammar, same node count, same backend) after the "
                   "first, with the same load, and report both and their ratios: e.g. "
                   "'--versus 10:oxen-storage=PATH' compares ours with 10 real storage servers.")
@click.option("--messages", type=click.IntRange(min=1), default=30, show_default=True,
              help="Onion-routed messages to send one at a time (and direct stores one at a time).")
@click.option("--stores", type=click.IntRange(min=1), default=200, show_default=True,
              help="Direct stores for the store throughput.")
@click.option("--retrieves", type=click.IntRange(min=1), default=200, show_default=True,
              help="Signed retrieves for the retrieve throughput.")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True,
              help="Stores/retrieves in flight at once (spread over as many accounts).")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --versus: bench the two testnets this many times, alternating (this, "
                   "versus, this, …), and judge the median of each ratio: steadier than one pair "
                   "on a machine whose speed drifts.")
@click.option("--proxies/--no-proxies", default=True, show_default=True,
              help="Put every node behind Toxiproxy, as testnets are for faults (both testnets "
                   "alike); --no-proxies measures the nodes without the proxy in the path.")
@click.option("--quick", is_flag=True,
              help="One short run (≤ 3 min on 2 cores) with the goal figures and their targets: "
                   "docker bring-up vs plain docker-compose, onion round trip (≥ 200 stores), "
                   "concurrent onion stores/s, delivery under the standard churn schedule.")
@click.option("--scale", type=click.IntRange(1, 254), default=None, metavar="N",
              help="Instead: N python nodes on the process backend (--swarm-size, --proxies) and "
                   "what they cost: up time, memory (RSS, PSS) per node and in all, idle CPU and "
                   "requests, onion round trip (--messages); --json: {\"scale\": {…}} (docs/nodes.md).")
@json_option(JSON_SHAPE)
@output_option("Also write the JSON result to FILE.")
@friendly_errors
def bench(backend: str, swarms: int | None, swarm_size: int, node_groups: tuple[str, ...],
          versus_groups: tuple[str, ...], messages: int, stores: int, retrieves: int,
          concurrency: int, rounds: int, proxies: bool, quick: bool, scale: int | None,
          as_json: bool, output: str | None) -> None:
    """Measure a new testnet (removed afterwards): up time, onion round trip and delivery, store
    and retrieve throughput, memory per node and proxy overhead; with --versus, the same on a
    second testnet (e.g. real storage servers) and the ratios of the two."""
    if scale is not None and (quick or versus_groups):
        raise click.UsageError("--scale benches its own testnet: leave out --quick and --versus")
    if scale is not None:
        from harness.bench.scale import scale_command

        scale_command(scale, backend=backend, swarm_size=swarm_size, proxies=proxies,
                      messages=messages, as_json=as_json, output=output)
        return
    ours, versus = topologies(swarms, swarm_size, node_groups, versus_groups, proxies)
    load = Load(messages=messages, stores=stores, retrieves=retrieves, concurrency=concurrency)
    if quick and versus is not None:
        raise click.UsageError("--quick benches one testnet: leave out --versus")
    if rounds > 1 and versus is None:
        raise click.UsageError("--rounds alternates two testnets: give --versus too")
    with progress() as report:
        if quick:
            from harness.bench.quick import QuickParams, run_quick

            result = run_quick(backend, ours, report, QuickParams(load=load))
        else:
            result = run_bench(backend, ours, load, report, versus=versus, rounds=rounds)
    emit_result(result, as_json=as_json, output=output, lines=lambda: table(result, quick=quick))


def table(result: dict[str, Any], *, quick: bool) -> list[str]:
    """The readable table of a bench run (with ``--quick``, its goal figures after it)."""
    if not quick:
        return render(result)
    from harness.bench.quick import render_quick

    return [*render(result), *render_quick(result)]
