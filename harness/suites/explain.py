"""What a failed scenario says: the property it checks, the seed that replays it, the messages
that failed or went missing, the faults in force, and where its report is.

Pure text from a recorded history and timeline (no network): the suites' conftest adds it to the
failed test's report as the ``scenario`` section, so it shows in the terminal and the JUnit XML.
"""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from harness.checks import CheckResult, History
from harness.faults.timeline import Event


def property_of(fn: Any) -> str:
    """The first paragraph of a scenario's docstring: the property of the network it checks."""
    doc = inspect.getdoc(fn) or ""
    first = doc.split("\n\n", 1)[0].strip()
    return " ".join(first.split()) or "(the scenario does not say: give it a docstring)"


def active_faults(events: Iterable[Event]) -> list[Event]:
    """Faults applied and not removed (by action and nodes/links) at the end of ``events``."""
    active: list[Event] = []
    for e in events:
        if not e.ok:
            continue
        if e.phase == "apply":
            active.append(e)
            continue
        for a in active:
            if a.action == e.action and (a.nodes == e.nodes or not e.nodes) and a.links == e.links:
                active.remove(a)
                break
    return active


def message_lines(history: History, results: list[CheckResult], limit: int = 10) -> list[str]:
    """The failed sends and the messages a delivery check found lost, one line each."""
    lines: list[str] = []
    for s in history.sends:
        if not s.ok:
            body = str(history.sent.get(s.op_id, {}).get("body"))
            shown = body if len(body) <= 60 else f"{body[:40]}… ({len(body)} characters)"
            lines.append(f"send {s.op_id} to {str(s.recipient)[:10]}… body {shown!r} failed: "
                         f"{s.error}")
    for r in results:
        for lost in (r.evidence or {}).get("lost", []) if isinstance(r.evidence, dict) else []:
            lines.append(f"lost ({r.name}): {lost}")
    if len(lines) > limit:
        lines = [*lines[:limit], f"… and {len(lines) - limit} more (see the report)"]
    return lines


def replay_command(nodeid: str, seed: str, backend: str | None, client: str | None,
                   nodes: Sequence[str] = ()) -> str:
    """The ``testnet suite run`` line that runs the scenario again on the same seed, backend,
    client and node groups (``nodes``: ``N:KIND[=PATH]`` specs of ``--nodes``)."""
    cmd = f"testnet suite run {shlex.quote(nodeid)} --seed {shlex.quote(seed)}"
    if backend:
        cmd += f" --backend {shlex.quote(backend)}"
    if client:
        cmd += f" --client {shlex.quote(client)}"
    for spec in nodes:
        cmd += f" --nodes {shlex.quote(spec)}"
    return cmd


def explain(*, prop: str, nodeid: str, testnets: list[dict[str, Any]], history: History | None,
            events: list[Event], results: list[CheckResult], report: str | None,
            client: str | None = None, nodes: Sequence[str] = ()) -> str:
    """The ``scenario`` section of a failed scenario's report."""
    seeds = sorted({str(t.get("seed")) for t in testnets if t.get("seed") is not None})
    out = [f"property: {prop}"]
    if seeds:
        out.append(f"seed: {', '.join(seeds)}")
        backend = next((str(t["backend"]) for t in testnets if t.get("backend")), None)
        out.append(f"replay: {replay_command(nodeid, seeds[0], backend, client, nodes)}")
    else:
        out.append("seed: (no testnet was started)")
    if testnets:
        out.append("testnets: " + ", ".join(
            f"{t.get('name')} ({t.get('backend')}, {t.get('swarms')}×{t.get('swarm_size')}"
            + (f", nodes {' + '.join(t['nodes'])}" if t.get("nodes") else "") + ")"
            for t in testnets))
    active = active_faults(events)
    out.append("faults in force at the end: " + ("none" if not active else ""))
    out.extend(f"  {e.describe(wall=True)}" for e in active)
    if events:
        out.append(f"fault events: {len(events)} (timeline in the report)")
    msgs = message_lines(history, results) if history is not None else []
    out.append("messages: " + ("no failed or lost message recorded" if not msgs else ""))
    out.extend(f"  {m}" for m in msgs)
    bad = [r for r in results if not r.ok]
    if bad:
        out.append("checks: " + "; ".join(f"{r.name} {r.verdict.value}: {r.summary}" for r in bad))
    out.append(f"report: {report or '(none: the scenario recorded no history)'}")
    return "\n".join(out)


__all__ = ["active_faults", "explain", "message_lines", "property_of", "replay_command"]
