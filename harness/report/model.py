"""The report of a run: which check failed, which messages, what the client did for them
attempt by attempt, which faults were active then, and where the node logs are.

    report = Report.build(results, history, log_paths={"sn01": "…/sn01.log"})
    report.to_dict()             # JSON-ready (report.json)
    markdown.render(report)      # report.md (harness.report.markdown)
    html.render(report, folder)  # report.html, one self-contained page (harness.report.html)
    write(report, folder)        # all of them + history.json (harness.report.write)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from harness.checks.history import History
from harness.checks.result import CheckResult, Verdict
from harness.client.records import OperationRecord, SendRecord
from harness.report.windows import FaultWindow, fault_windows


def _hop(history: History, h: dict[str, Any] | None) -> str:
    return history.label(h)


@dataclass
class Report:
    results: list[CheckResult]
    history: History
    log_paths: dict[str, str] = field(default_factory=dict)
    title: str = "testnet check report"
    testnet: str | None = None
    #: the testnets the run used: [{"name", "seed", "backend", "swarms", "swarm_size"}]
    testnets: list[dict[str, Any]] = field(default_factory=list)
    #: the pytest node id of the test (None outside pytest)
    nodeid: str | None = None

    @classmethod
    def build(cls, results: list[CheckResult], history: History, *,
              log_paths: dict[str, str] | None = None, title: str = "testnet check report",
              testnet: str | None = None, testnets: list[dict[str, Any]] | None = None,
              nodeid: str | None = None) -> Report:
        return cls(list(results), history, dict(log_paths or {}), title, testnet,
                   list(testnets or []), nodeid)

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
            "testnets": self.testnets, "nodeid": self.nodeid,
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


__all__ = ["Report"]
