"""The typed result every checker returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CheckResult:
    """Outcome of one checker over a history.

    ``summary`` is one line; ``details`` are human-readable lines (one per problem, or the
    measurements); ``evidence`` is JSON-ready data for reports (``op_ids`` names the operation
    records a failure is about, ``hashes`` the messages).
    """

    name: str
    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(name=data["name"], ok=bool(data["ok"]), summary=data.get("summary", ""),
                   details=list(data.get("details", [])), evidence=dict(data.get("evidence", {})))

    def __str__(self) -> str:
        head = f"[{'PASS' if self.ok else 'FAIL'}] {self.name}: {self.summary}"
        return "\n".join([head, *(f"  - {d}" for d in self.details)])


__all__ = ["CheckResult"]
