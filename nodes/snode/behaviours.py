"""Fault behaviours switchable through the admin interface (docs/DESIGN.md "Admin interface")."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nodes.common.values import is_int


@dataclass
class Behaviours:
    drop_stores: bool = False  # client stores answered but neither kept nor fanned out
    drop_relays: bool = False  # onion relays fail with 504 without contacting the next hop
    corrupt_relays: bool = False  # relayed blob gets one byte flipped
    delay_ms: int = 0  # every storage-port response is delayed by this much

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, changes: Any) -> None:
        """Apply a partial update; raises ValueError naming the bad key/value."""
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object such as {\"drop_stores\": true}")
        known = set(self.to_json())
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown behaviour {key!r}; known: {sorted(known)}")
            if key == "delay_ms":
                if not is_int(value) or value < 0:
                    raise ValueError(f"delay_ms must be a non-negative integer, got {value!r}")
            elif not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, got {value!r}")
        for key, value in changes.items():
            setattr(self, key, value)
