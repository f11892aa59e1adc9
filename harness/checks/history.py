"""A history: everything checkers and reports read, gathered in one JSON-ready object.

- ``records``: the client operation records (``harness.client.records``);
- ``sent``: what the test asked the client to send (``op_id`` → {"to", "body"}), since send
  records carry the message hash but not its text;
- ``deliveries``: messages the application got back from ``receive``/``wait_for``
  ({"account", "sender", "body", "hash", "node", "at"});
- ``events``: the fault timeline (``harness.faults.Event``);
- ``observations``: per node name, what ``GET /admin/v1/observations`` returned;
- ``nodes``: the directory, node name → {"ed25519", "public_ip", "bind_ip", "admin_url"}.

Pure data: gathering it from a running testnet is :mod:`harness.recording`'s job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.client.records import OperationRecord, ReceiveRecord, SendRecord, record_from_dict
from harness.faults.timeline import Event


@dataclass
class History:
    records: list[OperationRecord] = field(default_factory=list)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    observations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: addresses the test's clients connect from (see :func:`harness.recording.local_address_towards`)
    client_addresses: list[str] = field(default_factory=list)

    # -- views --------------------------------------------------------------------------------
    @property
    def sends(self) -> list[SendRecord]:
        return [r for r in self.records if isinstance(r, SendRecord)]

    @property
    def receives(self) -> list[ReceiveRecord]:
        return [r for r in self.records if isinstance(r, ReceiveRecord)]

    def node_name(self, ed25519: str | None) -> str | None:
        """Node name of an Ed25519 key (None when unknown)."""
        if not ed25519:
            return None
        for name, info in self.nodes.items():
            if info.get("ed25519") == ed25519:
                return name
        return None

    def label(self, hop: dict[str, Any] | None) -> str:
        """``sn03 (127.1.3.1)`` for a path hop / destination dict, the key's tail if unknown."""
        if not hop:
            return "-"
        if "url" in hop:
            return str(hop["url"])
        name = self.node_name(hop.get("ed25519"))
        where = hop.get("ip", "?")
        return f"{name} ({where})" if name else f"…{str(hop.get('ed25519', ''))[-8:]} ({where})"

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "records": [r.to_dict() for r in self.records],
            "sent": self.sent,
            "deliveries": self.deliveries,
            "events": [e.to_json() for e in self.events],
            "observations": self.observations,
            "nodes": self.nodes,
            "client_addresses": self.client_addresses,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(
            records=[record_from_dict(r) for r in data.get("records", [])],
            sent=dict(data.get("sent", {})),
            deliveries=list(data.get("deliveries", [])),
            events=[Event.from_json(e) for e in data.get("events", [])],
            observations={k: list(v) for k, v in data.get("observations", {}).items()},
            nodes=dict(data.get("nodes", {})),
            client_addresses=list(data.get("client_addresses", [])),
        )

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True, default=str))
        return p

    @classmethod
    def load(cls, path: str | Path) -> History:
        return cls.from_dict(json.loads(Path(path).read_text()))


__all__ = ["History"]
