"""Resident memory of every node of a testnet: the process backend reads ``VmRSS`` from
``/proc/PID/status`` of each node's own process (our node's interpreter, or the real server
itself); the docker backend takes one ``docker stats`` snapshot per node container (usage minus
inactive page cache, as ``docker stats`` shows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.bench.figures import MIB, container_memory_bytes, memory_summary, vmrss_kib
from harness.network import Testnet

SOURCE_PROC = "VmRSS of each node process (/proc/PID/status)"
SOURCE_DOCKER = "docker stats of each node container (usage - inactive_file)"


def _process_mib(pid: int) -> float | None:
    try:
        kib = vmrss_kib(Path(f"/proc/{pid}/status").read_text())
    except OSError:  # the node exited meanwhile
        return None
    return kib / 1024 if kib is not None else None


def _container_mib(container: str) -> float | None:
    from docker.client import from_env

    try:
        stats = from_env().containers.get(container).stats(stream=False)
    except Exception:  # the container is gone or the engine does not answer: no figure
        return None
    used = container_memory_bytes(stats) if isinstance(stats, dict) else None
    return used / MIB if used is not None else None


def node_memory(net: Testnet) -> dict[str, Any]:
    """:func:`~harness.bench.figures.memory_summary` of every node that could be measured."""
    per_node: dict[str, float] = {}
    sources = set()
    for n in net.nodes:
        mib: float | None = None
        if n.runtime.get("pid"):
            mib, source = _process_mib(int(n.runtime["pid"])), SOURCE_PROC
        elif n.runtime.get("container"):
            mib, source = _container_mib(str(n.runtime["container"])), SOURCE_DOCKER
        if mib is not None:
            per_node[n.name] = mib
            sources.add(source)
    return memory_summary(per_node, "; ".join(sorted(sources)))
