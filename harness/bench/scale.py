"""``testnet bench --scale N``: N python nodes on the process backend, and what they cost.

Figures (the ``"scale"`` object of ``--json``, :data:`SCALE_KEYS`):

- ``up_s``: ``Testnet.up`` until every node is registered, in a swarm and answering;
- memory, from ``/proc/PID/smaps_rollup`` of each node process: ``rss_*`` (resident, counting
  pages shared with the launcher and the other nodes once per process, so their sum overstates
  what the machine spends), ``pss_*`` (proportional: each shared page split among its sharers; the
  sum is the real cost) and ``uss_node_median_mib`` (private to the node). ``testnet_pss_total_mib``
  adds every other process of the testnet (launcher, seed, Toxiproxy, file server): the memory
  target is checked against it. ``system_used_delta_mib`` cross-checks it from the whole machine:
  ``MemTotal - MemAvailable`` of ``/proc/meminfo`` after ``up`` minus before (other jobs on the
  machine move it too);
- ``idle_cpu_percent``: CPU time of all nodes (``utime + stime`` of ``/proc/PID/stat``) over an
  idle window, in percent of one core (``idle_cpu_percent_all``: every process of the testnet);
- ``idle_requests_per_s``: HTTP requests the nodes started during that window (their admin
  state's ``requests_sent``: proofs and polls to the seed, requests to other nodes);
- ``onion_roundtrip_p50_ms`` / ``_p99_ms``: sequential onion-routed stores by the harness client
  (3-hop paths), after the idle window.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from harness import rpc
from harness.backends.process import marked_pids
from harness.bench.load import messaging
from harness.cliutil import emit_result
from harness.naming import unique_name
from harness.network import Testnet
from harness.progress import progress
from harness.topology import Topology

#: targets of the issue: 250 nodes up within a minute in at most 8 GiB
TARGETS = {"up_s": 60.0, "memory_gib": 8.0}
#: the idle window over which CPU and requests are counted
IDLE_WINDOW_S = 10.0
SCALE_KEYS = ("nodes", "swarm_size", "proxies", "launcher", "up_s", "rss_total_mib", "pss_total_mib",
              "rss_node_median_mib", "pss_node_median_mib", "uss_node_median_mib",
              "testnet_pss_total_mib", "testnet_processes", "system_used_delta_mib", "idle_window_s", "idle_cpu_percent",
              "idle_cpu_percent_all", "idle_requests_per_s", "idle_requests_per_node_per_s",
              "onion_messages", "onion_roundtrip_p50_ms", "onion_roundtrip_p99_ms", "memory_source",
              "down_s", "targets")
MEMORY_SOURCE = ("/proc/PID/smaps_rollup of each node process; the memory target is checked "
                 "against testnet_pss_total_mib (PSS of every process of the testnet)")

Reporter = Callable[[str], None]


@dataclass(frozen=True)
class ProcMemory:
    """One process's memory in KiB (``/proc/PID/smaps_rollup``)."""

    rss: int
    pss: int
    uss: int  # Private_Clean + Private_Dirty

    @staticmethod
    def parse(text: str) -> ProcMemory:
        """From the text of ``smaps_rollup``; raises ValueError when Rss or Pss is missing."""
        kib: dict[str, int] = {}
        for line in text.splitlines():
            key, sep, rest = line.partition(":")
            parts = rest.split()
            if sep and parts and parts[0].isdigit():
                kib[key.strip()] = int(parts[0])
        if "Rss" not in kib or "Pss" not in kib:
            raise ValueError("smaps_rollup without Rss/Pss lines")
        return ProcMemory(rss=kib["Rss"], pss=kib["Pss"],
                          uss=kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0))


def cpu_ticks(stat_text: str) -> int:
    """``utime + stime`` (clock ticks) from the text of ``/proc/PID/stat``."""
    fields = stat_text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])


def used_kib(meminfo: str) -> int:
    """``MemTotal - MemAvailable`` (KiB) from the text of ``/proc/meminfo``."""
    kib = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in meminfo.splitlines()) if v}
    return kib["MemTotal"] - kib["MemAvailable"]


def _used_kib() -> int | None:
    try:
        return used_kib(Path("/proc/meminfo").read_text())
    except (OSError, KeyError, ValueError):
        return None


def _read_memory(pid: int) -> ProcMemory | None:
    try:
        return ProcMemory.parse(Path(f"/proc/{pid}/smaps_rollup").read_text())
    except (OSError, ValueError):  # exited meanwhile
        return None


def _read_ticks(pid: int) -> int | None:
    try:
        return cpu_ticks(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return None


def _mib(kib: float) -> float:
    return round(kib / 1024, 1)


def memory_figures(nodes: Mapping[str, ProcMemory], others: Mapping[int, ProcMemory]) -> dict[str, Any]:
    """The memory keys of :data:`SCALE_KEYS` from each node's and each other process's memory."""
    if not nodes:
        raise ValueError("no node could be measured")
    mem = list(nodes.values())
    pss_total = sum(m.pss for m in mem)
    return {
        "rss_total_mib": _mib(sum(m.rss for m in mem)),
        "pss_total_mib": _mib(pss_total),
        "rss_node_median_mib": _mib(statistics.median(m.rss for m in mem)),
        "pss_node_median_mib": _mib(statistics.median(m.pss for m in mem)),
        "uss_node_median_mib": _mib(statistics.median(m.uss for m in mem)),
        "testnet_pss_total_mib": _mib(pss_total + sum(m.pss for m in others.values())),
        "testnet_processes": len(nodes) + len(others),
    }


def cpu_percent(before: Mapping[int, int], after: Mapping[int, int], window_s: float,
                hz: int) -> float:
    """CPU of the processes measured at both ends of the window, in percent of one core."""
    ticks = sum(after[p] - before[p] for p in after if p in before)
    return round(ticks / hz / window_s * 100, 1)


def requests_rate(before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]],
                  window_s: float) -> float | None:
    """Requests per second the nodes started, from their ``requests_sent`` at both ends (nodes
    missing at either end, e.g. a node of a revision without the counter, are left out; None
    when no node had it)."""
    common = [n for n in after if n in before]
    if not common:
        return None
    sent = sum(sum(after[n].values()) - sum(before[n].values()) for n in common)
    return round(sent / window_s, 1)


def targets(up_s: float, testnet_pss_mib: float) -> dict[str, Any]:
    gib = testnet_pss_mib / 1024
    return {"up_s": {"target": TARGETS["up_s"], "value": up_s, "met": up_s <= TARGETS["up_s"]},
            "memory": {"target": TARGETS["memory_gib"], "unit": "GiB", "value": round(gib, 2),
                       "measure": "testnet_pss_total_mib", "met": gib <= TARGETS["memory_gib"]}}


def scale_topology(nodes: int, swarm_size: int, proxies: bool) -> Topology:
    return Topology.from_dict({"name": unique_name("scale"), "swarm_size": swarm_size,
                               "nodes": [f"{nodes}:python"], "proxies": proxies})


async def _requests_sent(net: Testnet) -> dict[str, dict[str, int]]:
    async with rpc.new_session() as s:
        async def one(name: str, url: str) -> tuple[str, Any]:
            try:
                return name, await rpc.node_admin(s, url, net.state.admin_token, "state")
            except Exception:  # noqa: BLE001 - a node that does not answer is left out
                return name, None
        states = await asyncio.gather(*(one(n.name, n.admin_url) for n in net.nodes))
    return {name: st["requests_sent"] for name, st in states
            if isinstance(st, dict) and isinstance(st.get("requests_sent"), dict)}


def _measure(net: Testnet, window_s: float, report: Reporter) -> dict[str, Any]:
    node_pids = {n.name: int(n.runtime["pid"]) for n in net.nodes if n.runtime.get("pid")}
    all_pids = marked_pids(str(net.statedir.path))
    others = [p for p in all_pids if p not in set(node_pids.values())]
    memory = {name: m for name, pid in node_pids.items() if (m := _read_memory(pid)) is not None}
    other_memory = {pid: m for pid in others if (m := _read_memory(pid)) is not None}
    out = memory_figures(memory, other_memory)
    report(f"bench: idle for {window_s:.0f} s (CPU, requests)")
    sent0 = asyncio.run(_requests_sent(net))
    t0 = {p: t for p in all_pids if (t := _read_ticks(p)) is not None}
    start = time.monotonic()
    time.sleep(window_s)  # the measured window itself, not a wait for readiness
    t1 = {p: t for p in all_pids if (t := _read_ticks(p)) is not None}
    elapsed = time.monotonic() - start
    sent1 = asyncio.run(_requests_sent(net))
    hz = os.sysconf("SC_CLK_TCK")
    nodes_only = set(node_pids.values())
    out.update(
        idle_window_s=round(elapsed, 2),
        idle_cpu_percent=cpu_percent({p: t for p, t in t0.items() if p in nodes_only},
                                     {p: t for p, t in t1.items() if p in nodes_only}, elapsed, hz),
        idle_cpu_percent_all=cpu_percent(t0, t1, elapsed, hz))
    rate = requests_rate(sent0, sent1, elapsed)
    out["idle_requests_per_s"] = rate
    out["idle_requests_per_node_per_s"] = round(rate / len(node_pids), 2) if rate is not None and node_pids else None
    return out


def run_scale(nodes: int, report: Reporter, *, swarm_size: int = 5, proxies: bool = True,
              messages: int = 50, window_s: float = IDLE_WINDOW_S) -> dict[str, Any]:
    """Bring ``nodes`` python nodes up on the process backend, measure, take them down (always)."""
    topology = scale_topology(nodes, swarm_size, proxies)
    from harness.backends.process import launcher_enabled

    result: dict[str, Any] = {"nodes": nodes, "swarm_size": swarm_size, "proxies": proxies,
                              "launcher": launcher_enabled()}
    report(f"bench: starting {nodes} python nodes (process backend)")
    used0 = _used_kib()
    t0 = time.perf_counter()
    net = Testnet.up(topology, backend="process", report=report, timeout=max(120.0, 1.0 * nodes))
    result["up_s"] = round(time.perf_counter() - t0, 2)
    try:
        used1 = _used_kib()
        result["system_used_delta_mib"] = _mib(used1 - used0) if used0 is not None and used1 is not None else None
        result.update(_measure(net, window_s, report))
        report(f"bench: {messages} onion-routed stores, one at a time")
        send = asyncio.run(messaging(net, messages))["send"]
        result.update(onion_messages=send.get("n", 0), onion_roundtrip_p50_ms=send.get("p50_ms"),
                      onion_roundtrip_p99_ms=send.get("p99_ms"))
    finally:
        t1 = time.perf_counter()
        net.down()
        result["down_s"] = round(time.perf_counter() - t1, 2)
    result["memory_source"] = MEMORY_SOURCE
    result["targets"] = targets(result["up_s"], result["testnet_pss_total_mib"])
    return {"scale": {k: result.get(k) for k in SCALE_KEYS}}


def render_scale(result: dict[str, Any]) -> list[str]:
    """The readable table of ``{"scale": …}``."""
    s = result["scale"]
    t = s["targets"]

    def row(title: str, value: Any, unit: str = "") -> str:
        return f"  {title:<46}{'-' if value is None else value}{' ' + unit if unit and value is not None else ''}"

    started = "forked by the launcher" if s["launcher"] else "one interpreter each"
    return [
        f"{s['nodes']} python nodes, process backend, {started}, "
        f"{'behind Toxiproxy' if s['proxies'] else 'without Toxiproxy'}",
        row("up", s["up_s"], "s"),
        row("memory, testnet (PSS, all processes)", s["testnet_pss_total_mib"], "MiB"),
        row("memory, nodes PSS total", s["pss_total_mib"], "MiB"),
        row("memory, machine's used delta at up", s["system_used_delta_mib"], "MiB"),
        row("memory, nodes RSS total (shared counted n×)", s["rss_total_mib"], "MiB"),
        row("memory per node: PSS median", s["pss_node_median_mib"], "MiB"),
        row("memory per node: RSS median", s["rss_node_median_mib"], "MiB"),
        row("memory per node: private median", s["uss_node_median_mib"], "MiB"),
        row(f"idle CPU, nodes ({s['idle_window_s']} s)", s["idle_cpu_percent"], "% of a core"),
        row("idle CPU, all processes", s["idle_cpu_percent_all"], "% of a core"),
        row("idle requests sent", s["idle_requests_per_s"], "/s"),
        row("idle requests per node", s["idle_requests_per_node_per_s"], "/s"),
        row(f"onion round trip p50 ({s['onion_messages']})", s["onion_roundtrip_p50_ms"], "ms"),
        row("onion round trip p99", s["onion_roundtrip_p99_ms"], "ms"),
        f"  up target ≤ {t['up_s']['target']:.0f} s: {'met' if t['up_s']['met'] else 'MISSED'}; "
        f"memory target ≤ {t['memory']['target']:.0f} GiB (testnet PSS): "
        f"{'met' if t['memory']['met'] else 'MISSED'}",
    ]


def scale_command(nodes: int, *, backend: str, swarm_size: int, proxies: bool, messages: int,
                  as_json: bool, output: str | None) -> None:
    """``testnet bench --scale N``: run, then print the table or the JSON (and write ``output``)."""
    if backend != "process":
        raise click.UsageError(f"--scale measures the process backend (one process a node), not "
                               f"{backend!r}: drop --backend")
    with progress() as report:
        result = run_scale(nodes, report, swarm_size=swarm_size, proxies=proxies, messages=messages)
    emit_result(result, as_json=as_json, output=output, lines=lambda: render_scale(result))
