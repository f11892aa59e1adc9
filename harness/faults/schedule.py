"""Fault schedules (the "generator"): which fault happens when, generated from a seed, replayable.

A :class:`Schedule` is a list of :class:`Step` — ``{"at": seconds, "action", "target",
"params", "duration"}`` — plus the ``seed`` its random targets are drawn with. The file format
is JSON (docs/faults.md "Schedule files"). :meth:`Schedule.generate` builds one from a seed
(``random.Random(f"{seed}/{name}")``, never the global RNG); :func:`run` applies the steps at
their offsets from the start (monotonic deadlines) and removes timed faults when their duration
is over.

Replays are deterministic: step ``i`` resolves its target with
``random.Random(f"{seed}/{name}/step/{i}")`` over sorted candidates, steps run in a fixed order
(time, then removals before applications, then step index), and nodes held by an exclusive fault
(kill, stop, pause, decommission, down) are excluded from the random draws of later exclusive
steps — so the same schedule on a testnet with the same seed resolves to the same faults on the
same nodes in the same order.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.faults.actions import (
    ACTIONS,
    BEHAVIOURS,
    CHURN,
    EXCLUSIVE,
    REVERSIBLE,
    Fault,
    FaultError,
    Faults,
    check_params,
)
from harness.faults.targets import Target, TargetError
from harness.faults.timeline import Event
from harness.jsonfile import load_json

FORMAT_VERSION = 1
#: actions a step may name: every fault action plus heal / clear
STEP_ACTIONS = ACTIONS + ("heal", "clear")
#: actions without a target
UNTARGETED = ("heal", "add_nodes")
#: what Schedule.generate picks from by default (weights)
DEFAULT_MIX: dict[str, float] = {
    "latency": 4, "bandwidth": 1, "timeout": 1, "reset": 1, "down": 2, "kill": 2, "pause": 1,
    "partition": 1, "skew_clock": 1,
}


class ScheduleError(ValueError):
    """A schedule file or step is invalid; the message names the step and the problem."""


@dataclass
class Step:
    at: float
    action: str
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    duration: float | None = None

    def validate(self, index: int | None = None) -> None:
        where = f"step {index}" if index is not None else "step"
        if isinstance(self.at, bool) or not isinstance(self.at, (int, float)) or self.at < 0:
            raise ScheduleError(f"{where}: 'at' must be a number of seconds >= 0, got {self.at!r}")
        if self.action not in STEP_ACTIONS:
            raise ScheduleError(f"{where}: unknown action {self.action!r}; known: "
                                f"{', '.join(STEP_ACTIONS)}")
        if self.target is None and self.action not in UNTARGETED + ("clear",):
            raise ScheduleError(f"{where}: action {self.action!r} needs a target")
        if self.target is not None:
            if self.action in UNTARGETED:
                raise ScheduleError(f"{where}: action {self.action!r} takes no target")
            try:
                Target.parse(self.target)
            except TargetError as e:
                raise ScheduleError(f"{where}: {e}") from None
        if not isinstance(self.params, dict):
            raise ScheduleError(f"{where}: 'params' must be an object, got {self.params!r}")
        if self.action == "misbehave":
            bad = sorted(set(self.params) - set(BEHAVIOURS))
            if bad or not self.params:
                raise ScheduleError(f"{where}: misbehave needs params among "
                                    f"{', '.join(BEHAVIOURS)}" + (f"; unknown: {', '.join(bad)}"
                                                                  if bad else ""))
        elif self.action == "clear":
            if set(self.params) - {"node_side"}:
                raise ScheduleError(f"{where}: clear only takes the parameter node_side")
        elif self.action == "heal":
            if self.params:
                raise ScheduleError(f"{where}: heal takes no parameters")
        else:
            params = {k: v for k, v in self.params.items()
                      if not (self.action == "partition" and k == "from")}
            try:
                check_params(self.action, params)
            except ValueError as e:
                raise ScheduleError(f"{where}: {e}") from None
        if self.action == "partition" and self.params.get("from") is not None:
            try:
                Target.parse(self.params["from"])
            except TargetError as e:
                raise ScheduleError(f"{where}: params.from: {e}") from None
        if self.duration is not None:
            if (isinstance(self.duration, bool) or not isinstance(self.duration, (int, float))
                    or self.duration <= 0):
                raise ScheduleError(f"{where}: 'duration' must be > 0 seconds, got "
                                    f"{self.duration!r}")
            if self.action not in REVERSIBLE:
                raise ScheduleError(f"{where}: {self.action!r} cannot be undone, so it cannot "
                                    "have a duration")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "action": self.action}
        if self.target is not None:
            out["target"] = self.target
        if self.params:
            out["params"] = dict(self.params)
        if self.duration is not None:
            out["duration"] = self.duration
        return out

    @classmethod
    def from_json(cls, data: Any, index: int | None = None) -> Step:
        where = f"step {index}" if index is not None else "step"
        if not isinstance(data, dict):
            raise ScheduleError(f"{where} must be an object, got {data!r}")
        unknown = sorted(set(data) - {"at", "action", "target", "params", "duration"})
        if unknown:
            raise ScheduleError(f"{where}: unknown field(s) {', '.join(unknown)} (fields: at, "
                                "action, target, params, duration)")
        if "at" not in data or "action" not in data:
            raise ScheduleError(f"{where}: 'at' and 'action' are required")
        target = data.get("target")
        if isinstance(target, list):
            target = ",".join(str(t) for t in target)
        step = cls(at=data["at"], action=data["action"], target=target,
                   params=dict(data.get("params") or {}), duration=data.get("duration"))
        step.validate(index)
        return step


@dataclass
class Schedule:
    steps: list[Step]
    seed: str = "0"
    name: str = "schedule"
    #: total length in seconds (default: when the last step ends)
    duration: float | None = None

    def __post_init__(self) -> None:
        for i, s in enumerate(self.steps):
            s.validate(i)

    @property
    def length(self) -> float:
        ends = [s.at + (s.duration or 0.0) for s in self.steps]
        return max([self.duration or 0.0, *ends])

    def rng_for(self, index: int) -> random.Random:
        """The RNG step ``index`` resolves its target with."""
        return random.Random(f"{self.seed}/{self.name}/step/{index}")

    def agenda(self) -> list[tuple[float, str, int]]:
        """(time, "apply"|"remove", step index) in execution order: by time, removals before
        applications at the same time, then by step index."""
        items = []
        for i, s in enumerate(self.steps):
            items.append((float(s.at), 1, i, "apply"))
            if s.duration is not None:
                items.append((float(s.at) + float(s.duration), 0, i, "remove"))
        items.sort()
        return [(t, phase, i) for t, _, i, phase in items]

    # -- file format -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": FORMAT_VERSION, "name": self.name, "seed": self.seed}
        if self.duration is not None:
            out["duration"] = self.duration
        out["steps"] = [s.to_json() for s in self.steps]
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.dumps())
        return p

    @classmethod
    def from_json(cls, data: Any, *, default_name: str = "schedule") -> Schedule:
        if isinstance(data, list):
            data = {"steps": data}
        if not isinstance(data, dict):
            raise ScheduleError("a schedule is a JSON object {\"seed\", \"steps\": [...]} or a "
                                "list of steps")
        unknown = sorted(set(data) - {"version", "name", "seed", "duration", "steps"})
        if unknown:
            raise ScheduleError(f"unknown schedule field(s): {', '.join(unknown)}")
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ScheduleError(f"schedule format version {version!r} is not supported "
                                f"(this harness reads version {FORMAT_VERSION})")
        steps = data.get("steps")
        if not isinstance(steps, list):
            raise ScheduleError("'steps' must be a list of steps")
        duration = data.get("duration")
        if duration is not None and (not isinstance(duration, (int, float)) or duration < 0):
            raise ScheduleError(f"'duration' must be a number of seconds, got {duration!r}")
        return cls(steps=[Step.from_json(s, i) for i, s in enumerate(steps)],
                   seed=str(data.get("seed", "0")), name=str(data.get("name", default_name)),
                   duration=duration)

    @classmethod
    def load(cls, path: str | Path) -> Schedule:
        p = Path(path)
        data = load_json(p, "schedule", ScheduleError)
        try:
            return cls.from_json(data, default_name=p.stem)
        except ScheduleError as e:
            raise ScheduleError(f"schedule file {p}: {e}") from None

    # -- generation --------------------------------------------------------------------------
    @classmethod
    def generate(cls, seed: str, duration: float, *, nodes: Sequence[str] | None = None,
                 roles: Sequence[str] | None = None, mix: Mapping[str, float] | None = None,
                 name: str = "schedule", gap: tuple[float, float] = (1.0, 5.0),
                 length: tuple[float, float] = (2.0, 10.0), max_down: int = 1) -> Schedule:
        """A random schedule from ``seed``: steps every ``gap`` seconds (uniform), each lasting
        ``length`` seconds (clipped to ``duration``), actions drawn from ``mix`` (weights).

        Targets are explicit names drawn from ``nodes``, or target specs drawn from ``roles``
        (e.g. ``["random:1", "guard"]``, resolved when applied; default ``["random:1"]``). At
        most ``max_down`` exclusive faults (kill, stop, pause, decommission, down, partition)
        overlap; with explicit ``nodes`` they never hit the same node twice at once.
        """
        if duration <= 0:
            raise ScheduleError(f"duration must be > 0 seconds, got {duration}")
        if nodes is not None and roles is not None:
            raise ScheduleError("give either nodes (explicit names) or roles (target specs)")
        if gap[0] <= 0 or gap[1] < gap[0] or length[0] <= 0 or length[1] < length[0]:
            raise ScheduleError(f"invalid gap {gap} or length {length}: need 0 < min <= max")
        mix = dict(mix or DEFAULT_MIX)
        for action, weight in mix.items():
            if action not in ACTIONS or action in ("up", "start", "unpause", "recommission"):
                raise ScheduleError(f"mix: {action!r} cannot be generated; use fault actions "
                                    f"such as {', '.join(sorted(DEFAULT_MIX))}")
            if weight < 0:
                raise ScheduleError(f"mix: weight of {action!r} must be >= 0")
        actions = sorted(a for a, w in mix.items() if w > 0)
        if not actions:
            raise ScheduleError("mix has no action with a positive weight")
        weights = [mix[a] for a in actions]
        pool = sorted(nodes) if nodes is not None else None
        if pool is not None and not pool:
            raise ScheduleError("nodes is empty")
        role_list = list(roles) if roles is not None else ["random:1"]
        for r in role_list:
            Target.parse(r)
        rng = random.Random(f"{seed}/{name}")
        steps: list[Step] = []
        #: (start, end, nodes or None when resolved at run time) of generated exclusive faults
        held: list[tuple[float, float, frozenset[str] | None]] = []
        #: (start, end, node, action) of generated toxic faults on explicit nodes
        toxic_held: list[tuple[float, float, str, str]] = []
        t = 0.0
        while True:
            t = round(t + rng.uniform(*gap), 3)
            if t >= duration:
                break
            action = rng.choices(actions, weights)[0]
            reversible = action in REVERSIBLE
            dur = round(min(rng.uniform(*length), duration - t), 3) if reversible else None
            if dur is not None and dur < 0.1:
                continue
            end = t + (dur or 0.0)
            exclusive = action in EXCLUSIVE or action == "partition"
            overlapping = [h for h in held if h[0] < end and t < h[1]]
            if exclusive and len(overlapping) >= max_down:
                continue  # keep the testnet usable: skip, the next draw comes later
            params = _params_for(action, rng)
            target: str | None
            if action == "add_nodes":
                target = None
                held_nodes: frozenset[str] | None = None
            elif pool is not None:
                busy = set().union(*(h[2] or set() for h in overlapping)) if exclusive else set()
                if not exclusive:
                    busy = {n for s, e, n, a in toxic_held if a == action and s < end and t < e}
                free = [n for n in pool if n not in busy]
                if action == "partition":
                    if len(pool) < 2 or any(h[2] is None for h in overlapping):
                        continue
                    k = rng.randint(1, len(pool) // 2)
                    chosen = sorted(rng.sample(pool, k))
                else:
                    if not free:
                        continue
                    chosen = [rng.choice(free)]
                target = ",".join(chosen)
                held_nodes = frozenset(pool if action == "partition" else chosen)
                if not exclusive and dur is not None:
                    toxic_held.extend((t, end, n, action) for n in chosen)
            else:
                target = rng.choice(role_list)
                held_nodes = None
            if exclusive and dur is not None:
                held.append((t, end, held_nodes))
            steps.append(Step(at=t, action=action, target=target, params=params, duration=dur))
        return cls(steps=steps, seed=str(seed), name=name, duration=float(duration))

    @classmethod
    def churn(cls, seed: str, duration: float, interval: float, *, nodes: Sequence[str],
              count: int = 1, action: str = "kill",
              swarms: Mapping[int, Sequence[str]] | None = None,
              name: str = "churn") -> Schedule:
        """Every ``interval`` seconds take ``count`` nodes out with ``action`` (kill, stop,
        pause, decommission, down) and bring them back ``interval`` later (just before the next
        round); nodes of the previous round are only chosen again when no other will do. With
        ``swarms`` (swarm id -> member names) at least one member of every swarm stays up, so
        every account keeps a live swarm member."""
        if action not in EXCLUSIVE:
            raise ScheduleError(f"churn action must be one of {', '.join(sorted(EXCLUSIVE))}")
        if interval <= 0 or duration <= 0 or count < 1:
            raise ScheduleError("churn needs interval > 0, duration > 0 and count >= 1")
        pool = sorted(nodes)
        if count > len(pool):
            raise ScheduleError(f"cannot take {count} of {len(pool)} nodes out at once")
        swarm_of = {n: sid for sid, members in (swarms or {}).items() for n in members}
        sizes = {sid: len(members) for sid, members in (swarms or {}).items()}
        rng = random.Random(f"{seed}/{name}")
        steps: list[Step] = []
        previous: set[str] = set()
        t = 0.0
        while t < duration:
            dur = round(min(interval, duration - t), 3)
            chosen: list[str] = []
            out: dict[int, int] = {}
            # random order, but the nodes of the previous round (just back) come last
            order = sorted(rng.sample(pool, len(pool)), key=lambda n: n in previous)
            for n in order:
                sid = swarm_of.get(n)
                if sid is not None and out.get(sid, 0) + 1 >= sizes[sid]:
                    continue  # would take the last member of its swarm out
                chosen.append(n)
                if sid is not None:
                    out[sid] = out.get(sid, 0) + 1
                if len(chosen) == count:
                    break
            if len(chosen) < count:
                raise ScheduleError(f"cannot take {count} nodes out while keeping one member of "
                                    "every swarm up; lower the count")
            steps.append(Step(at=round(t, 3), action=action, target=",".join(sorted(chosen)),
                              duration=dur))
            previous = set(chosen)
            t = round(t + interval, 3)
        return cls(steps=steps, seed=str(seed), name=name, duration=float(duration))


def _params_for(action: str, rng: random.Random) -> dict[str, Any]:
    if action == "latency":
        ms = rng.randrange(50, 501, 10)
        return {"ms": ms, "jitter": rng.randrange(0, ms // 2 + 1, 5)}
    if action == "bandwidth":
        return {"kbps": rng.choice([4, 16, 64, 256])}
    if action == "timeout":
        return {"ms": rng.choice([0, 500, 2000])}
    if action == "reset":
        return {"timeout_ms": rng.choice([0, 100, 1000])}
    if action == "slow_close":
        return {"delay_ms": rng.choice([100, 1000, 3000])}
    if action == "slicer":
        size = rng.choice([16, 64, 256])
        return {"average_size": size, "size_variation": size // 4,
                "delay_us": rng.choice([0, 100, 1000])}
    if action == "limit_data":
        return {"nbytes": rng.choice([100, 1000, 10000])}
    if action == "skew_clock":
        return {"offset_ms": rng.choice([-1, 1]) * rng.choice([5_000, 30_000, 120_000, 600_000])}
    if action == "misbehave":
        return rng.choice([{"drop_stores": True}, {"drop_relays": True},
                           {"corrupt_relays": True}, {"delay_ms": rng.choice([200, 1000])}])
    if action == "add_nodes":
        return {"count": 1}
    return {}


# -- running -----------------------------------------------------------------------------------

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
                exclusive = step.action in EXCLUSIVE
                exclude = sorted({n for ns in held.values() for n in ns}) if exclusive else []
                params = dict(step.params)
                out = faults.apply(step.action, step.target, rng=schedule.rng_for(i), step=i,
                                   tag=f"s{i}", exclude=exclude, **params)
                if isinstance(out, Fault):
                    note(out.event)
                    if step.duration is not None:
                        active[i] = out
                        if exclusive:
                            held[i] = list(out.nodes)
                else:
                    note(out)
            except (FaultError, TargetError, ValueError) as e:
                result.errors.append(f"step {i} ({phase} {step.action} at {at:g}s): {e}")
                last = faults.timeline.events[-1] if faults.timeline.events else None
                if last is not None and last.step == i and last.error and last not in result.events:
                    note(last)  # Faults recorded the failure already
                else:
                    note(faults.timeline.record(Event(
                        action=step.action, phase=phase, target=step.target,
                        params=dict(step.params), error=str(e), step=i)))
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


__all__ = ["Schedule", "Step", "ScheduleError", "run", "RunResult", "RealClock", "VirtualClock",
           "Clock", "DEFAULT_MIX", "STEP_ACTIONS", "FORMAT_VERSION", "CHURN"]
