"""Running a fault schedule: :func:`run` applies the steps of a
:class:`~harness.faults.schedule.Schedule` at their offsets from the start (monotonic deadlines,
on a :class:`RealClock` or a :class:`VirtualClock`) and removes timed faults when their duration
is over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from harness.faults.actions import Faults
from harness.faults.fault import Fault, FaultError
from harness.faults.schedule import Schedule
from harness.faults.targets import TargetError
from harness.faults.timeline import Event


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep_until(self, deadline: float) -> bool:
        """Wait until ``monotonic() >= deadline``; return False if interrupted."""
        ...


class RealClock:
    """Wall-clock waits on ``time.monotonic``; ``stop()`` (from any thread) interrupts them."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float) -> bool:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return not self._stop.is_set()
            if self._stop.wait(left):
                return False

    def stop(self) -> None:
        self._stop.set()


class VirtualClock:
    """A clock that jumps to each deadline at once (tests, dry runs)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def sleep_until(self, deadline: float) -> bool:
        self.now = max(self.now, deadline)
        return True


@dataclass
class RunResult:
    events: list[Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.interrupted


def run(schedule: Schedule, faults: Faults, clock: Clock | None = None, *,
        stop_on_error: bool = False, cleanup: bool = True,
        on_event: Callable[[Event], None] | None = None) -> RunResult:
    """Apply ``schedule`` to the testnet of ``faults``; timed faults are removed when their
    duration is over. Errors are recorded (timeline and result) and the run goes on unless
    ``stop_on_error``. On an early end (error with ``stop_on_error``, clock interrupted,
    KeyboardInterrupt) timed faults still in force are removed when ``cleanup``."""
    clock = clock or RealClock()
    result = RunResult()
    active: dict[int, Fault] = {}
    held: dict[int, list[str]] = {}  # step index -> nodes held by an exclusive fault
    start = clock.monotonic()

    def note(ev: Event | None) -> None:
        if ev is not None:
            result.events.append(ev)
            if on_event:
                on_event(ev)

    try:
        for at, phase, i in schedule.agenda():
            if not clock.sleep_until(start + at):
                result.interrupted = True
                break
            step = schedule.steps[i]
            try:
                if phase == "remove":
                    fault = active.pop(i, None)
                    held.pop(i, None)
                    if fault is not None:
                        note(faults.remove(fault, step=i))
                    continue
                kind = faults.registry.get(step.action)
                exclude = (sorted({n for ns in held.values() for n in ns}) if kind.exclusive
                           else [])
                out = faults.apply_kind(kind, step.target, step.params,
                                        rng=schedule.rng_for(i), step=i, tag=f"s{i}",
                                        exclude=exclude)
                note(out.event)
                if step.duration is not None:
                    active[i] = out
                    if kind.exclusive:
                        held[i] = list(out.nodes)
            except (FaultError, TargetError, ValueError) as e:
                result.errors.append(f"step {i} ({phase} {step.action} at {at:g}s): {e}")
                last = faults.timeline.events[-1] if faults.timeline.events else None
                if last is not None and last.step == i and last.error and last not in result.events:
                    note(last)  # Faults recorded the failure already
                else:
                    note(faults.timeline.record(Event(
                        action=step.action, phase=phase,
                        target=None if step.target is None else str(step.target),
                        params=step.to_json().get("params", {}), error=str(e), step=i)))
                if stop_on_error:
                    result.interrupted = True
                    break
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        if cleanup:
            for i in sorted(active, reverse=True):
                try:
                    note(faults.remove(active[i], step=i))
                except FaultError as e:
                    result.errors.append(f"step {i} (cleanup remove {active[i].action}): {e}")
    return result


__all__ = ["Clock", "RealClock", "RunResult", "VirtualClock", "run"]
