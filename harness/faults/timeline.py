"""The record of every fault applied to and removed from a testnet.

An :class:`Event` is one fault operation: when (wall time and monotonic offset from the start of
the timeline), what (action, target spec, the node names it resolved to, parameters), which
phase (``apply`` / ``remove``) and how it ended (result or error). A :class:`Timeline` is an
ordered list of events that can be saved and loaded as JSON lines, optionally appended to a file
as events happen (so a crash loses nothing and reports can read it later).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

PHASES = ("apply", "remove")

#: fields that differ between two runs of the same schedule (excluded from comparisons)
TIMING_FIELDS = ("wall", "offset", "seq")


@dataclass
class Event:
    action: str
    phase: str
    nodes: list[str] = field(default_factory=list)
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: links affected, as "src->dst" node names (single-link faults and partitions)
    links: list[str] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    #: index of the schedule step that caused the event (None outside schedules)
    step: int | None = None
    wall: float = 0.0
    offset: float = 0.0
    seq: int = 0

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"event phase must be one of {PHASES}, got {self.phase!r}")

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def resolved(self) -> dict[str, Any]:
        """The event without timing fields: what two replays of one schedule must agree on."""
        d = self.to_json()
        for k in TIMING_FIELDS:
            d.pop(k, None)
        return d

    def describe(self, wall: bool = False) -> str:
        """One line: time (offset, or local wall-clock time with ``wall``), phase, action,
        nodes or links, parameters, outcome."""
        what = ", ".join(self.nodes) or "-"
        if self.links:
            what += f" [{', '.join(self.links)}]"
        params = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()) if v is not None)
        status = "ok" if self.ok else f"FAILED: {self.error}"
        when = (time.strftime("%H:%M:%S", time.localtime(self.wall)) + f".{int(self.wall % 1 * 1000):03d}"
                if wall else f"{self.offset:8.3f}s")
        return (f"[{when}] {self.phase:<6} {self.action:<12} {what}"
                f"{'  ' + params if params else ''}  {status}")


class Timeline:
    """Ordered, thread-safe list of :class:`Event`; ``path`` appends each event as a JSON line."""

    def __init__(self, path: str | Path | None = None, *, start: float | None = None) -> None:
        self.events: list[Event] = []
        self.path = Path(path) if path is not None else None
        self.start_monotonic = time.monotonic() if start is None else start
        self.start_wall = time.time()
        self._lock = threading.Lock()

    def record(self, event: Event) -> Event:
        with self._lock:
            event.wall = time.time()
            event.offset = round(time.monotonic() - self.start_monotonic, 6)
            event.seq = len(self.events)
            self.events.append(event)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as f:
                    f.write(json.dumps(event.to_json(), sort_keys=True, default=str) + "\n")
        return event

    def __iter__(self) -> Iterator[Event]:
        return iter(list(self.events))

    def __len__(self) -> int:
        return len(self.events)

    def resolved(self) -> list[dict[str, Any]]:
        """Every event without timing fields (see :meth:`Event.resolved`)."""
        return [e.resolved() for e in self.events]

    def errors(self) -> list[Event]:
        return [e for e in self.events if not e.ok]

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w") as f:
            for e in self.events:
                f.write(json.dumps(e.to_json(), sort_keys=True, default=str) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> Timeline:
        p = Path(path)
        tl = cls()
        try:
            lines = p.read_text().splitlines()
        except FileNotFoundError:
            raise FileNotFoundError(f"timeline file {p} does not exist") from None
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                tl.events.append(Event.from_json(json.loads(line)))
            except (ValueError, TypeError) as e:
                raise ValueError(f"timeline file {p} line {lineno} is not an event: {e}") from None
        if tl.events:
            tl.start_wall = tl.events[0].wall - tl.events[0].offset
        return tl


__all__ = ["Event", "Timeline", "PHASES", "TIMING_FIELDS"]
