"""Fault schedules (the "generator"): which fault happens when, generated from a seed, replayable.

A :class:`Schedule` is a list of :class:`~harness.faults.step.Step` — ``{"at": seconds,
"action", "target", "params", "duration"}`` — plus the ``seed`` its random targets are drawn
with. The file format is JSON (docs/faults.md "Schedule files"). :meth:`Schedule.generate`
builds one from a seed (:mod:`harness.faults.generate`); :func:`harness.faults.runner.run`
applies the steps at their offsets from the start and removes timed faults when their duration
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.faults.families.registry import DEFAULT_REGISTRY, Registry
from harness.faults.generate import churn_steps, generate_steps
from harness.faults.replay import steps_from_events
from harness.faults.step import ScheduleError, Step
from harness.faults.targets import Target
from harness.faults.timeline import Event
from harness.jsonfile import load_json

FORMAT_VERSION = 1


@dataclass
class Schedule:
    steps: list[Step]
    seed: str = "0"
    name: str = "schedule"
    #: total length in seconds (default: when the last step ends)
    duration: float | None = None
    #: the fault kinds its actions name
    registry: Registry = field(default=DEFAULT_REGISTRY, repr=False, compare=False)

    def __post_init__(self) -> None:
        for i, s in enumerate(self.steps):
            s.validate(i, self.registry)

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
    def from_json(cls, data: Any, *, default_name: str = "schedule",
                  registry: Registry = DEFAULT_REGISTRY) -> Schedule:
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
        return cls(steps=[Step.from_json(s, i, registry) for i, s in enumerate(steps)],
                   seed=str(data.get("seed", "0")), name=str(data.get("name", default_name)),
                   duration=duration, registry=registry)

    @classmethod
    def load(cls, path: str | Path, *, registry: Registry = DEFAULT_REGISTRY) -> Schedule:
        p = Path(path)
        data = load_json(p, "schedule", ScheduleError)
        try:
            return cls.from_json(data, default_name=p.stem, registry=registry)
        except ScheduleError as e:
            raise ScheduleError(f"schedule file {p}: {e}") from None

    @classmethod
    def from_timeline(cls, events: Sequence[Event], *, seed: str = "0",
                      name: str = "replay", registry: Registry = DEFAULT_REGISTRY) -> Schedule:
        """The schedule a run applied, from its timeline (:mod:`harness.faults.replay`):
        targets are the nodes each fault resolved to, times are from the first fault."""
        return cls(steps=steps_from_events(events, registry), seed=str(seed), name=name,
                   registry=registry)

    # -- generation --------------------------------------------------------------------------
    @classmethod
    def generate(cls, seed: str, duration: float, *, nodes: Sequence[str] | None = None,
                 roles: Sequence[str | Target] | None = None,
                 mix: Mapping[str, float] | None = None, name: str = "schedule",
                 gap: tuple[float, float] = (1.0, 5.0), length: tuple[float, float] = (2.0, 10.0),
                 max_down: int = 1, registry: Registry = DEFAULT_REGISTRY) -> Schedule:
        """A random schedule from ``seed``: steps every ``gap`` seconds (uniform), each lasting
        ``length`` seconds (clipped to ``duration``), actions drawn from ``mix`` (weights;
        default: the registry's ``default_mix()``) with parameters from each kind's
        ``generate``.

        Targets are explicit names drawn from ``nodes``, or target specs drawn from ``roles``
        (e.g. ``["random:1", "guard"]``, resolved when applied; default ``["random:1"]``). At
        most ``max_down`` disruptive faults (kill, stop, pause, decommission, down, partition)
        overlap; with explicit ``nodes`` they never hit the same node twice at once.
        """
        steps = generate_steps(seed, duration, nodes=nodes, roles=roles, mix=mix, name=name,
                               gap=gap, length=length, max_down=max_down, registry=registry)
        return cls(steps=steps, seed=str(seed), name=name, duration=float(duration),
                   registry=registry)

    @classmethod
    def churn(cls, seed: str, duration: float, interval: float, *, nodes: Sequence[str],
              count: int = 1, action: str = "kill",
              swarms: Mapping[int, Sequence[str]] | None = None,
              name: str = "churn", registry: Registry = DEFAULT_REGISTRY) -> Schedule:
        """Every ``interval`` seconds take ``count`` nodes out with ``action`` (an exclusive
        kind: kill, stop, pause, decommission, down) and bring them back ``interval`` later
        (just before the next round); nodes of the previous round are only chosen again when no
        other will do. With ``swarms`` (swarm id -> member names) at least one member of every
        swarm stays up, so every account keeps a live swarm member."""
        steps = churn_steps(seed, duration, interval, nodes=nodes, count=count, action=action,
                            swarms=swarms, name=name, registry=registry)
        return cls(steps=steps, seed=str(seed), name=name, duration=float(duration),
                   registry=registry)


__all__ = ["FORMAT_VERSION", "Schedule", "ScheduleError", "Step"]
