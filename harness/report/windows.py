"""Fault windows: a fault from its ``apply`` event to its ``remove`` event on the timeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


__all__ = ["FaultWindow", "fault_windows"]
