"""One step of a fault schedule: when (``at``), what (``action``, ``params``), on which nodes
(``target``) and for how long (``duration``). The target and target-valued parameters are
parsed here, once, when the step is made or loaded; the run passes them down typed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.faults.families.base import ParamError
from harness.faults.families.registry import DEFAULT_REGISTRY, Registry, UnknownAction
from harness.faults.targets import Target, TargetError

#: the fields of a step in a schedule file
STEP_FIELDS = ("at", "action", "target", "params", "duration")


class ScheduleError(ValueError):
    """A schedule file or step is invalid; the message names the step and the problem."""


@dataclass
class Step:
    """``target`` is a :class:`Target` (a target string or list of names given here is parsed
    at construction); ``params`` are checked, and target-valued ones parsed, by
    :meth:`validate` (which :class:`~harness.faults.schedule.Schedule` calls for every step)."""

    at: float
    action: str
    target: Target | None = None
    params: dict[str, Any] = field(default_factory=dict)
    duration: float | None = None

    def __post_init__(self) -> None:
        raw: Any = self.target
        if raw is not None and not isinstance(raw, Target):
            try:
                self.target = Target.parse(raw)
            except TargetError as e:
                raise ScheduleError(f"step ({self.action}): {e}") from None

    @classmethod
    def of(cls, at: float, action: str, target: str | Target | Sequence[str] | None = None,
           params: dict[str, Any] | None = None, duration: float | None = None) -> Step:
        """A step from a target string (or list of names), parsed now."""
        try:
            parsed = None if target is None else Target.parse(target)
        except TargetError as e:
            raise ScheduleError(f"step ({action}): {e}") from None
        return cls(at, action, parsed, dict(params or {}), duration)

    def validate(self, index: int | None = None, registry: Registry = DEFAULT_REGISTRY) -> None:
        """Check the step against its fault kind; target-valued parameters become
        :class:`Target`. Raises :class:`ScheduleError` naming the step."""
        where = f"step {index}" if index is not None else "step"
        if isinstance(self.at, bool) or not isinstance(self.at, (int, float)) or self.at < 0:
            raise ScheduleError(f"{where}: 'at' must be a number of seconds >= 0, got {self.at!r}")
        try:
            kind = registry.get(self.action)
        except UnknownAction as e:
            raise ScheduleError(f"{where}: {e}") from None
        if self.target is None and kind.target == "required":
            raise ScheduleError(f"{where}: action {self.action!r} needs a target")
        if self.target is not None and kind.target == "none":
            raise ScheduleError(f"{where}: action {self.action!r} takes no target")
        if not isinstance(self.params, dict):
            raise ScheduleError(f"{where}: 'params' must be an object, got {self.params!r}")
        try:
            self.params = kind.parse(self.params)
        except ParamError as e:
            raise ScheduleError(f"{where}: {e}") from None
        if self.duration is not None:
            if (isinstance(self.duration, bool) or not isinstance(self.duration, (int, float))
                    or self.duration <= 0):
                raise ScheduleError(f"{where}: 'duration' must be > 0 seconds, got "
                                    f"{self.duration!r}")
            if not kind.reversible:
                raise ScheduleError(f"{where}: {self.action!r} cannot be undone, so it cannot "
                                    "have a duration")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "action": self.action}
        if self.target is not None:
            out["target"] = str(self.target)
        if self.params:
            out["params"] = {k: str(v) if isinstance(v, Target) else v
                             for k, v in self.params.items()}
        if self.duration is not None:
            out["duration"] = self.duration
        return out

    @classmethod
    def from_json(cls, data: Any, index: int | None = None,
                  registry: Registry = DEFAULT_REGISTRY) -> Step:
        where = f"step {index}" if index is not None else "step"
        if not isinstance(data, dict):
            raise ScheduleError(f"{where} must be an object, got {data!r}")
        unknown = sorted(set(data) - set(STEP_FIELDS))
        if unknown:
            raise ScheduleError(f"{where}: unknown field(s) {', '.join(unknown)} (fields: "
                                f"{', '.join(STEP_FIELDS)})")
        if "at" not in data or "action" not in data:
            raise ScheduleError(f"{where}: 'at' and 'action' are required")
        target = data.get("target")
        try:
            parsed = None if target is None else Target.parse(target)
        except TargetError as e:
            raise ScheduleError(f"{where}: {e}") from None
        step = cls(at=data["at"], action=data["action"], target=parsed,
                   params=dict(data.get("params") or {}), duration=data.get("duration"))
        step.validate(index, registry)
        return step


__all__ = ["STEP_FIELDS", "ScheduleError", "Step"]
