"""From a run back to its faults: the schedule a run applied, read off its timeline, so that
``testnet schedule run`` reproduces it on a fresh testnet with the same seed.

Every successful ``apply`` event becomes a step: ``at`` = seconds after the first fault,
``action``, ``target`` = the node names it resolved to (not the spec, e.g. ``random:1``, it was
given), ``params`` as recorded (a target-valued parameter, such as a partition's other side,
becomes the node names the fault's result recorded) and ``duration`` = until the matching ``remove`` (none
when the fault was never removed, or cannot be). Failed applies changed nothing and are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.faults.families.registry import DEFAULT_REGISTRY, Registry
from harness.faults.step import ScheduleError, Step
from harness.faults.targets import Target
from harness.faults.timeline import Event
from harness.jsonfile import load_json


def _key(ev: Event) -> tuple[Any, ...]:
    return (ev.action, tuple(ev.nodes), tuple(ev.links), ev.target)


def applied_windows(events: Iterable[Event]) -> list[tuple[Event, Event | None]]:
    """(apply, matching remove or None) for every successful apply, in time order."""
    out: list[tuple[Event, Event | None]] = []
    open_: dict[tuple[Any, ...], list[int]] = {}
    for ev in sorted(events, key=lambda e: (e.wall, e.seq)):
        if ev.phase == "apply" and ev.ok:
            open_.setdefault(_key(ev), []).append(len(out))
            out.append((ev, None))
        elif ev.phase == "remove" and open_.get(_key(ev)):
            i = open_[_key(ev)].pop(0)
            out[i] = (out[i][0], ev)
    return out


def _sides(ev: Event) -> tuple[list[str], list[str]] | None:
    """A two-sided fault's (partition) sides as its result recorded them."""
    r = ev.result
    if isinstance(r, dict) and isinstance(r.get("side_a"), list) and isinstance(r.get("side_b"), list):
        return [str(n) for n in r["side_a"]], [str(n) for n in r["side_b"]]
    return None


def resolved_target(ev: Event, registry: Registry = DEFAULT_REGISTRY) -> list[str] | None:
    """The nodes the fault's target resolved to (a partition: its first side)."""
    if registry.get(ev.action).target == "none" or not ev.nodes:
        return None
    sides = _sides(ev)
    return sides[0] if sides else list(ev.nodes)


def resolved_params(ev: Event, registry: Registry = DEFAULT_REGISTRY) -> dict[str, Any]:
    """The event's parameters, a target-valued one (a partition's other side) as the node names
    it resolved to."""
    params = dict(ev.params)
    sides = _sides(ev)
    for p in registry.get(ev.action).params:
        if p.type is Target and sides:
            params[p.name] = ",".join(sides[1])
    return params


def steps_from_events(events: Iterable[Event], registry: Registry = DEFAULT_REGISTRY
                      ) -> list[Step]:
    """The schedule steps that reproduce the faults of ``events`` (see the module docstring)."""
    windows = applied_windows(events)
    if not windows:
        return []
    t0 = windows[0][0].wall
    steps = []
    for apply, remove in windows:
        target = resolved_target(apply, registry)
        duration = None if remove is None else round(max(remove.wall - apply.wall, 0.001), 3)
        steps.append(Step.of(round(apply.wall - t0, 3), apply.action, target,
                             resolved_params(apply, registry), duration))
    return steps


def run_file_events(path: str | Path) -> tuple[list[Event], str | None]:
    """The fault events and testnet seed of a run's ``report.json`` (its ``timeline``) or
    ``history.json`` (its ``events``; the seed from the report.json beside it)."""
    p = Path(path)
    data = load_json(p, "run", ScheduleError)
    if isinstance(data, dict) and "timeline" in data:
        raw, meta = data["timeline"], data
    elif isinstance(data, dict) and "events" in data:
        raw = data["events"]
        beside = p.with_name("report.json")
        meta = load_json(beside, "report", ScheduleError) if beside.is_file() else {}
    else:
        raise ScheduleError(f"{p} is neither a run's report.json (with a 'timeline') nor its "
                            "history.json (with 'events'); give one from a test's artifacts")
    try:
        events = [Event.from_json(e) for e in raw]
    except (TypeError, ValueError) as e:
        raise ScheduleError(f"{p}: a timeline event is invalid: {e}") from None
    seeds = [t.get("seed") for t in (meta.get("testnets") or []) if isinstance(t, dict)]
    return events, (str(seeds[0]) if seeds and seeds[0] is not None else None)


__all__ = ["applied_windows", "resolved_params", "resolved_target", "run_file_events", "steps_from_events"]
