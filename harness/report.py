"""Reports that explain a failure: which check failed, which messages, what the client did for
them attempt by attempt, which faults were active then, and where the node logs are.

    report = Report.build(results, history, log_paths={"sn01": "…/sn01.log"})
    report.markdown()            # human-readable
    report.to_dict()             # JSON-ready
    report.write(folder)         # report.md + report.json (+ history.json)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checks.history import History
from harness.checks.result import CheckResult, Verdict
from harness.client.records import OperationRecord, SendRecord
from harness.faults.timeline import Event


@dataclass
class FaultWindow:
    """A fault from its ``apply`` event to its ``remove`` event (``end`` None: never removed)."""

    action: str
    nodes: list[str]
    params: dict[str, Any]
    links: list[str]
    start: float
    end: float | None
    error: str | None = None

    def overlaps(self, t0: float, t1: float) -> bool:
        return self.start <= t1 and (self.end is None or self.end >= t0)

    def describe(self, origin: float) -> str:
        what = ", ".join(self.nodes) or "-"
        if self.links:
            what += f" [{', '.join(self.links)}]"
        params = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()) if v is not None)
        end = "still active" if self.end is None else f"removed at +{self.end - origin:.3f}s"
        err = f" (apply FAILED: {self.error})" if self.error else ""
        return f"{self.action} {what}{' ' + params if params else ''}: applied at " \
               f"+{self.start - origin:.3f}s, {end}{err}"


def fault_windows(events: list[Event]) -> list[FaultWindow]:
    """Pair every ``apply`` event with the next ``remove`` of the same action, nodes and links."""
    out: list[FaultWindow] = []
    open_: dict[tuple[Any, ...], list[FaultWindow]] = {}
    for ev in sorted(events, key=lambda e: (e.wall, e.seq)):
        key = (ev.action, tuple(ev.nodes), tuple(ev.links), ev.target)
        if ev.phase == "apply":
            w = FaultWindow(ev.action, list(ev.nodes), dict(ev.params), list(ev.links), ev.wall,
                            None, ev.error)
            out.append(w)
            if ev.ok:
                open_.setdefault(key, []).append(w)
        elif open_.get(key):
            open_[key].pop(0).end = ev.wall
    return out


def _hop(history: History, h: dict[str, Any] | None) -> str:
    return history.label(h)


@dataclass
class Report:
    results: list[CheckResult]
    history: History
    log_paths: dict[str, str] = field(default_factory=dict)
    title: str = "testnet check report"
    testnet: str | None = None

    @classmethod
    def build(cls, results: list[CheckResult], history: History, *,
              log_paths: dict[str, str] | None = None, title: str = "testnet check report",
              testnet: str | None = None) -> Report:
        return cls(list(results), history, dict(log_paths or {}), title, testnet)

    # -- analysis -----------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def verdict(self) -> Verdict:
        """``FAILED`` if a check failed, else ``UNKNOWN`` if one could not decide, else ``OK``."""
        if any(r.failed for r in self.results):
            return Verdict.FAILED
        if any(r.unknown for r in self.results):
            return Verdict.UNKNOWN
        return Verdict.OK

    @property
    def origin(self) -> float:
        times = [r.started_at for r in self.history.records] + [e.wall for e in self.history.events]
        return min(times) if times else 0.0

    def record(self, op_id: str) -> OperationRecord | None:
        return next((r for r in self.history.records if r.op_id == op_id), None)

    def active_faults(self, t0: float, t1: float) -> list[FaultWindow]:
        return [w for w in fault_windows(self.history.events) if w.overlaps(t0, t1)]

    def nodes_of(self, rec: OperationRecord) -> list[str]:
        names: list[str] = []
        for a in rec.attempts:
            for h in [*a.path, a.destination or {}, a.failed_node or {}]:
                n = self.history.node_name(h.get("ed25519")) if h else None
                if n and n not in names:
                    names.append(n)
        return names

    def failed_ops(self) -> list[str]:
        """Operations that ended in an error and no failing check already explains."""
        named = {o for r in self.results if not r.ok for o in r.evidence.get("op_ids", [])}
        return [r.op_id for r in self.history.records
                if r.outcome == "error" and r.op_id not in named]

    def log_pointer(self, node: str) -> str:
        if node in self.log_paths:
            return str(self.log_paths[node])
        net = f" --name {self.testnet}" if self.testnet else ""
        return f"`testnet logs {node}{net}` (saved with the test's artifacts when it fails)"

    def explain(self, op_id: str) -> dict[str, Any]:
        """Everything about one operation: record, attempts, overlapping faults, node logs."""
        rec = self.record(op_id)
        if rec is None:
            return {"op_id": op_id, "missing": True}
        t0, t1 = rec.started_at, rec.ended_at or rec.started_at
        faults = self.active_faults(t0, t1)
        nodes = self.nodes_of(rec)
        for w in faults:
            nodes += [n for n in w.nodes if n not in nodes]
        intent = self.history.sent.get(op_id, {})
        return {
            "op_id": op_id, "kind": rec.kind, "from": rec.account, "to": rec.recipient,
            "body": intent.get("body"),
            "hash": rec.message_hash if isinstance(rec, SendRecord) else None,
            "outcome": rec.outcome, "error": rec.error,
            "started": t0 - self.origin, "ended": t1 - self.origin,
            "attempts": [{
                "n": a.n, "method": a.method, "at": a.started_at - self.origin,
                "elapsed_ms": round(a.elapsed_ms, 1),
                "path": [_hop(self.history, h) for h in a.path],
                "destination": _hop(self.history, a.destination),
                "http_status": a.http_status, "status": a.status, "ok": a.ok,
                "error_kind": a.error_kind, "error": a.error,
                "failed_node": _hop(self.history, a.failed_node) if a.failed_node else None,
                "actions": list(a.actions),
            } for a in rec.attempts],
            "faults": [{"action": w.action, "nodes": w.nodes, "links": w.links,
                        "params": w.params, "start": w.start - self.origin,
                        "end": None if w.end is None else w.end - self.origin,
                        "text": w.describe(self.origin)} for w in faults],
            "logs": {n: self.log_pointer(n) for n in nodes},
        }

    # -- output -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title, "testnet": self.testnet, "ok": self.ok,
            "verdict": self.verdict.value,
            "generated_at": time.time(), "origin": self.origin,
            "checks": [r.to_dict() for r in self.results],
            "failures": [{"check": r.name, "verdict": r.verdict.value, "summary": r.summary,
                          "operations": [self.explain(o) for o in r.evidence.get("op_ids", [])]}
                         for r in self.results if not r.ok],
            "failed_operations": [self.explain(o) for o in self.failed_ops()],
            "timeline": [e.to_json() for e in self.history.events],
            "logs": {n: self.log_pointer(n) for n in self.history.nodes},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, default=str)

    def markdown(self, max_ops: int = 20) -> str:
        out = [f"# {self.title}", ""]
        if self.testnet:
            out += [f"Testnet `{self.testnet}`; times are seconds from the first operation or "
                    "fault (+0.000s).", ""]
        out += ["| check | result | summary |", "| --- | --- | --- |"]
        out += [f"| {r.name} | {r.verdict.label if r.ok else f'**{r.verdict.label}**'} | "
                f"{r.summary} |" for r in self.results]
        out.append("")
        for r in self.results:
            if r.ok:
                continue
            out += [f"## {r.verdict.name}: {r.name}", "", r.summary, ""]
            out += [f"- {d}" for d in r.details]
            ops = r.evidence.get("op_ids", [])
            if ops:
                out += ["", f"### Operations involved ({len(ops)})", ""]
            for op in ops[:max_ops]:
                out += self._md_op(self.explain(op))
            if len(ops) > max_ops:
                out.append(f"… and {len(ops) - max_ops} more (see report.json)")
            out.append("")
        failed_ops = self.failed_ops()
        if failed_ops:
            out += [f"## Operations that failed ({len(failed_ops)})", ""]
            for op in failed_ops[:max_ops]:
                out += self._md_op(self.explain(op))
        passed = [r for r in self.results if r.ok]
        if passed:
            out += ["## Passed checks", ""]
            for r in passed:
                out += [f"### {r.name}", "", r.summary, ""] + [f"- {d}" for d in r.details] + [""]
        if self.history.events:
            out += ["## Fault timeline", "", "```"]
            out += [f"+{e.wall - self.origin:8.3f}s {e.describe()[e.describe().index(']') + 2:]}"
                    for e in sorted(self.history.events, key=lambda e: (e.wall, e.seq))]
            out += ["```", ""]
        if self.history.nodes:
            out += ["## Node logs", ""]
            out += [f"- {n} ({info.get('public_ip')}, …{str(info.get('ed25519'))[-8:]}): "
                    f"{self.log_pointer(n)}" for n, info in sorted(self.history.nodes.items())]
            out.append("")
        return "\n".join(out)

    def _md_op(self, e: dict[str, Any]) -> list[str]:
        if e.get("missing"):
            return [f"#### {e['op_id']}: no record in the history", ""]
        what = f" message {e['body']!r}" if e.get("body") is not None else ""
        out = [f"#### {e['kind']} {e['op_id']}{what}", "",
               f"- from `{e['from']}` to `{e['to']}`" + (f", hash `{e['hash']}`" if e["hash"] else ""),
               f"- +{e['started']:.3f}s → +{e['ended']:.3f}s, outcome **{e['outcome']}**"
               + (f": {e['error']}" if e.get("error") else ""),
               "", "| # | at | method | path (guard first) | destination | status | error | client did |",
               "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for a in e["attempts"]:
            status = f"{a['http_status']}/{a['status']}" if a["status"] is not None else str(a["http_status"])
            err = f"{a['error_kind']}: {a['error']}" if a["error_kind"] else ("ok" if a["ok"] else "")
            out.append(f"| {a['n']} | +{a['at']:.3f}s ({a['elapsed_ms']:.0f} ms) | {a['method']} | "
                       f"{' → '.join(a['path']) or 'direct'} | {a['destination']} | {status} | "
                       f"{err.replace('|', '/')} | {', '.join(a['actions'])} |")
        out.append("")
        if e["faults"]:
            out.append("Faults active during this operation:")
            out += [f"- {f['text']}" for f in e["faults"]]
        else:
            out.append("No fault from the timeline was active during this operation.")
        if e["logs"]:
            out += ["", "Node logs:"] + [f"- {n}: {p}" for n, p in e["logs"].items()]
        out.append("")
        return out

    def write(self, folder: str | Path, *, with_history: bool = True) -> dict[str, Path]:
        """Write ``report.md``, ``report.json`` (and ``history.json``) into ``folder``."""
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": d / "report.md", "json": d / "report.json"}
        paths["markdown"].write_text(self.markdown())
        paths["json"].write_text(self.to_json())
        if with_history:
            paths["history"] = self.history.save(d / "history.json")
        return paths


def render_markdown(results: list[CheckResult], history: History, **kw: Any) -> str:
    return Report.build(results, history, **kw).markdown()


def render_json(results: list[CheckResult], history: History, **kw: Any) -> dict[str, Any]:
    return Report.build(results, history, **kw).to_dict()


__all__ = ["FaultWindow", "Report", "fault_windows", "render_json", "render_markdown"]
