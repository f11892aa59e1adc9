"""Generated fault schedules: the steps of :meth:`Schedule.generate` and :meth:`Schedule.churn`
(see :mod:`harness.faults.schedule`), drawn from a seeded RNG (``random.Random(f"{seed}/{name}")``,
never the global one). Which actions may be drawn, their random parameters and how explicit
nodes are picked come from the fault kinds of the registry."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from harness.faults.families.base import FaultKind
from harness.faults.families.registry import DEFAULT_REGISTRY, Registry, UnknownAction
from harness.faults.step import ScheduleError, Step
from harness.faults.targets import Target, TargetError


def _mix(mix: Mapping[str, float] | None, registry: Registry) -> list[tuple[FaultKind, float]]:
    chosen = dict(mix or registry.default_mix())
    examples = ", ".join(sorted(registry.default_mix()))
    out = []
    for action, weight in chosen.items():
        try:
            kind = registry.get(action)
        except UnknownAction as e:
            raise ScheduleError(f"mix: {e}") from None
        if not kind.generatable:
            raise ScheduleError(f"mix: {action!r} cannot be generated; use fault actions such "
                                f"as {examples}")
        if weight < 0:
            raise ScheduleError(f"mix: weight of {action!r} must be >= 0")
        if weight > 0:
            out.append((kind, weight))
    if not out:
        raise ScheduleError("mix has no action with a positive weight")
    return sorted(out, key=lambda kw: kw[0].action)


def generate_steps(seed: str, duration: float, *, nodes: Sequence[str] | None = None,
                   roles: Sequence[str | Target] | None = None,
                   mix: Mapping[str, float] | None = None, name: str = "schedule",
                   gap: tuple[float, float] = (1.0, 5.0),
                   length: tuple[float, float] = (2.0, 10.0), max_down: int = 1,
                   registry: Registry = DEFAULT_REGISTRY) -> list[Step]:
    """The steps of ``Schedule.generate`` (see there)."""
    if duration <= 0:
        raise ScheduleError(f"duration must be > 0 seconds, got {duration}")
    if nodes is not None and roles is not None:
        raise ScheduleError("give either nodes (explicit names) or roles (target specs)")
    if gap[0] <= 0 or gap[1] < gap[0] or length[0] <= 0 or length[1] < length[0]:
        raise ScheduleError(f"invalid gap {gap} or length {length}: need 0 < min <= max")
    weighted = _mix(mix, registry)
    kinds = [k for k, _ in weighted]
    weights = [w for _, w in weighted]
    pool = sorted(nodes) if nodes is not None else None
    if pool is not None and not pool:
        raise ScheduleError("nodes is empty")
    try:
        role_list = [Target.parse(r) for r in roles] if roles is not None else [
            Target("random", count=1)]
    except TargetError as e:
        raise ScheduleError(f"roles: {e}") from None
    rng = random.Random(f"{seed}/{name}")
    steps: list[Step] = []
    #: (start, end, nodes or None when resolved at run time) of generated disruptive faults
    held: list[tuple[float, float, frozenset[str] | None]] = []
    #: (start, end, node, action) of generated other faults on explicit nodes
    kind_held: list[tuple[float, float, str, str]] = []
    t = 0.0
    while True:
        t = round(t + rng.uniform(*gap), 3)
        if t >= duration:
            break
        kind = rng.choices(kinds, weights)[0]
        dur = round(min(rng.uniform(*length), duration - t), 3) if kind.reversible else None
        if dur is not None and dur < 0.1:
            continue
        end = t + (dur or 0.0)
        overlapping = [h for h in held if h[0] < end and t < h[1]]
        if kind.disruptive and len(overlapping) >= max_down:
            continue  # keep the testnet usable: skip, the next draw comes later
        params = kind.generate(rng)
        target: Target | None
        held_nodes: frozenset[str] | None = None
        if kind.target == "none":
            target = None
        elif pool is not None:
            if kind.disruptive:
                busy = set().union(*(h[2] or set() for h in overlapping))
            else:
                busy = {n for s, e, n, a in kind_held if a == kind.action and s < end and t < e}
            if kind.holds_all_nodes and any(h[2] is None for h in overlapping):
                continue
            chosen = kind.pick_nodes(rng, pool, [n for n in pool if n not in busy])
            if not chosen:
                continue
            target = Target("nodes", names=tuple(chosen))
            held_nodes = frozenset(pool if kind.holds_all_nodes else chosen)
            if not kind.disruptive and dur is not None:
                kind_held.extend((t, end, n, kind.action) for n in chosen)
        else:
            target = rng.choice(role_list)
        if kind.disruptive and dur is not None:
            held.append((t, end, held_nodes))
        steps.append(Step(at=t, action=kind.action, target=target, params=params, duration=dur))
    return steps


def churn_steps(seed: str, duration: float, interval: float, *, nodes: Sequence[str],
                count: int = 1, action: str = "kill",
                swarms: Mapping[int, Sequence[str]] | None = None, name: str = "churn",
                registry: Registry = DEFAULT_REGISTRY) -> list[Step]:
    """The steps of ``Schedule.churn`` (see there)."""
    exclusive = registry.exclusive()
    if action not in exclusive:
        raise ScheduleError(f"churn action must be one of {', '.join(sorted(exclusive))}")
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
        steps.append(Step(at=round(t, 3), action=action,
                          target=Target("nodes", names=tuple(sorted(chosen))), duration=dur))
        previous = set(chosen)
        t = round(t + interval, 3)
    return steps


__all__ = ["churn_steps", "generate_steps"]
