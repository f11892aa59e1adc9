"""The pure arithmetic of ``testnet bench``: latency percentiles, throughput, resident memory
from ``/proc`` and docker stats, and the ratios of two testnets' figures. No I/O here."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024

#: the figures ``ratios`` compares, by name: the path of keys to each in a testnet's figures
RATIO_FIGURES: dict[str, tuple[str, ...]] = {
    "up_s": ("up_s",),
    "store_per_s": ("store_throughput", "per_s"),
    "retrieve_per_s": ("retrieve_throughput", "per_s"),
    "onion_p50_ms": ("send", "p50_ms"),
    "onion_p99_ms": ("send", "p99_ms"),
    "memory_node_median_mib": ("memory", "node_median_mib"),
    "memory_node_max_mib": ("memory", "node_max_mib"),
    "memory_nodes_total_mib": ("memory", "nodes_total_mib"),
}


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of ``values``: the smallest sample with at
    least ``q`` of all samples at or below it (p99 of 30 samples is the largest)."""
    if not values:
        raise ValueError("percentile of no samples")
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


@dataclass
class Stats:
    """Latency samples in milliseconds."""

    samples_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """``{"n", "p50_ms", "p95_ms", "p99_ms", "max_ms"}`` (``{"n": 0}`` without samples)."""
        s = self.samples_ms
        if not s:
            return {"n": 0}
        return {"n": len(s), "p50_ms": round(statistics.median(s), 2),
                "p95_ms": round(percentile(s, 0.95), 2), "p99_ms": round(percentile(s, 0.99), 2),
                "max_ms": round(max(s), 2)}


def latency_summary(values: list[float]) -> dict[str, float]:
    return Stats(values).summary()


def throughput(requests: int, ok: int, errors: Mapping[str, int], wall_s: float, concurrency: int,
               samples_ms: list[float]) -> dict[str, Any]:
    """Figures of a batch of ``requests`` run ``concurrency`` at a time in ``wall_s`` seconds:
    ``per_s`` counts the successful ones (``ok``); ``errors`` maps what failed to how often."""
    per_s = ok / wall_s if wall_s > 0 else 0.0
    return {"requests": requests, "ok": ok, "errors": dict(errors), "concurrency": concurrency,
            "wall_s": round(wall_s, 3), "per_s": round(per_s, 1), **latency_summary(samples_ms)}


def vmrss_kib(proc_status: str) -> int | None:
    """The resident set size (KiB) in the text of ``/proc/PID/status``, or None without one
    (a zombie or kernel thread has no ``VmRSS`` line)."""
    for line in proc_status.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
            raise ValueError(f"unreadable VmRSS line in /proc status: {line!r}")
    return None


def container_memory_bytes(stats: Mapping[str, Any]) -> int | None:
    """A container's memory in use from one docker stats snapshot, as ``docker stats`` shows
    it: ``usage`` minus the inactive page cache (``total_inactive_file`` on cgroup v1,
    ``inactive_file`` on v2). None when the snapshot has no usage (container not running)."""
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage")
    if not isinstance(usage, int):
        return None
    detail = mem.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    return max(0, usage - cache) if isinstance(cache, int) else usage


def memory_summary(per_node_mib: Mapping[str, float], source: str) -> dict[str, Any]:
    """``{"node_max_mib", "nodes_total_mib", "node_median_mib", "per_node_mib", "source"}``, or
    ``{}`` when no node could be measured."""
    if not per_node_mib:
        return {}
    values = list(per_node_mib.values())
    return {"node_max_mib": round(max(values), 1), "nodes_total_mib": round(sum(values), 1),
            "node_median_mib": round(statistics.median(values), 1),
            "per_node_mib": {k: round(v, 1) for k, v in sorted(per_node_mib.items())},
            "source": source}


def figure(figures: Mapping[str, Any], path: Sequence[str]) -> float | None:
    """The number at ``path`` in a testnet's figures, or None where it is missing."""
    value: Any = figures
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def ratios(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, float | None]:
    """``ours / theirs`` for every figure of :data:`RATIO_FIGURES` (3 decimals); None where
    either side lacks the figure or theirs is 0. Above 1: ours is larger — faster for the
    ``per_s`` throughputs, slower or bigger for times and memory."""
    out: dict[str, float | None] = {}
    for name, path in RATIO_FIGURES.items():
        a, b = figure(ours, path), figure(theirs, path)
        out[name] = round(a / b, 3) if a is not None and b else None
    return out


def median_ratios(per_round: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """The median of each ratio over the rounds of a comparison (rounds where it is None left
    out; None where every round lacks it)."""
    out: dict[str, float | None] = {}
    for name in RATIO_FIGURES:
        values = [v for r in per_round if (v := r.get(name)) is not None]
        out[name] = round(statistics.median(values), 3) if values else None
    return out


#: the goals of our node against the real storage server, side by side in one bench run
#: (docs/nodes.md): ratio name -> (op, bound)
VERSUS_GOALS: dict[str, tuple[str, float]] = {"store_per_s": (">=", 0.8), "onion_p50_ms": ("<=", 1.5)}


def versus_targets(ratios_: Mapping[str, float | None], *, rounds: int) -> dict[str, dict[str, Any]]:
    """``{"ratios.<name>": {"op", "target", "met", "of"}}`` for :data:`VERSUS_GOALS`, judged on
    ``ratios_`` (the median over ``rounds`` rounds when there are several); ``met`` is None
    where the ratio is not measured."""
    out: dict[str, dict[str, Any]] = {}
    for name, (op, bound) in VERSUS_GOALS.items():
        value = ratios_.get(name)
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        of = "the ratio" if rounds == 1 else f"the median ratio of {rounds} rounds"
        out[f"ratios.{name}"] = {"op": op, "target": bound, "met": met, "of": of}
    return out
