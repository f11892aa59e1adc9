"""The shape of a fault kind: parameters, validation, generation, apply and undo.

A :class:`FaultKind` is one action (``latency``, ``kill``, ``partition``, …) of a family
(``toxics``, ``links``, ``behaviours``, ``churn``, ``clock``, ``maintenance``). It declares its
parameters as :class:`Param` (from which validation, the CLI options and the docs follow), draws
random parameters for generated schedules from a seeded RNG, applies itself through a
:class:`~harness.faults.context.FaultContext` and records in the :class:`Fault` what it needs to
undo itself. The registry (:mod:`harness.faults.families.registry`) maps action names to kinds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.faults.context import FaultContext
from harness.faults.fault import Fault, FaultError
from harness.faults.targets import Target, TargetError


class ParamError(ValueError):
    """Parameters do not fit the action: unknown, missing, of the wrong type or out of range."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: default of a parameter that must be given
REQUIRED: Any = _Required()

ParamType = type[int] | type[float] | type[bool] | type[str] | type[Target]


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a fault kind.

    ``type`` is ``int``, ``float``, ``bool``, ``str`` (with ``choices``) or :class:`Target` (a
    second target, such as a link's destination; given as a target string and parsed once when
    the parameters are checked). ``default`` :data:`REQUIRED` makes it mandatory; ``None``
    means "not given" (left out of the applied parameters). ``cli`` overrides the CLI option
    declaration (default ``--<name with dashes>``; booleans ``--x/--no-x``)."""

    name: str
    type: ParamType
    default: Any = REQUIRED
    help: str = ""
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    cli: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, action: str, value: Any) -> Any:
        """``value`` checked (and a target string parsed); raises :class:`ParamError`."""
        where = f"{action}: parameter {self.name}"
        if self.type is Target:
            if isinstance(value, Target):
                return value
            if isinstance(value, str) or (isinstance(value, (list, tuple))
                                          and all(isinstance(v, str) for v in value)):
                try:
                    return Target.parse(value)
                except TargetError as e:
                    raise ParamError(f"{where}: {e}") from None
            raise ParamError(f"{where} must be a target string (e.g. sn02, random:1), "
                             f"got {value!r}")
        if self.type is bool:
            if not isinstance(value, bool):
                raise ParamError(f"{where} must be true or false, got {value!r}")
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise ParamError(f"{where} must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ParamError(f"{where} must be one of {', '.join(self.choices)}, "
                                 f"got {value!r}")
            return value
        numeric = (int,) if self.type is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            what = "an integer" if self.type is int else "a number"
            raise ParamError(f"{where} must be {what}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ParamError(f"{where} must be >= {self.minimum:g}, got {value!r}")
        return value


@dataclass(frozen=True)
class Request:
    """One application of a kind: the parsed target, the complete parameters (defaults filled
    in), the RNG of random targets, nodes to leave out of random draws, and a tag naming this
    application's Toxiproxy toxics (schedule steps: ``s<i>``)."""

    target: Target | None
    params: Mapping[str, Any]
    rng: random.Random | None = None
    exclude: tuple[str, ...] = ()
    tag: str | None = None
    #: what the nodes' implementation must support (harness.nodekinds.base: network, churn, …)
    capability: str | None = None

    def nodes(self, ctx: FaultContext, target: Target | None = None) -> list[str]:
        """The nodes ``target`` (default: this request's target) selects now."""
        t = target if target is not None else self.target
        if t is None:
            raise TargetError("this action needs a target (node names, 'random:N', …)")
        nodes = ctx.nodes_of(t, self.rng, self.exclude)
        if self.capability:
            ctx.require(nodes, self.capability)
        return nodes


class FaultKind:
    """One fault action. Subclasses set the class attributes and implement :meth:`apply` (and
    :meth:`undo` when ``reversible``); :meth:`check` and :meth:`generate` are optional hooks.

    Attributes: ``action`` (registry name), ``family``, ``params``; ``target``: ``"required"``,
    ``"optional"`` or ``"none"``; ``reversible``: :meth:`undo` exists, so a schedule step may
    have a duration; ``exclusive``: takes a node out of service (a schedule run never stacks two
    on one node); ``disruptive``: counts against a generated schedule's ``max_down``;
    ``weight``: weight in :data:`~harness.faults.families.registry.DEFAULT_MIX` (0: not drawn
    by default); ``generatable``: may appear in a generated schedule's mix; ``cleared_by``:
    ``"network"`` or ``"node_side"`` when ``clear`` undoes it; ``holds_all_nodes``: a
    generated step blocks every node (partition); ``cli_verb`` (default: the action with
    dashes) and ``cli_group`` (``"fault"``, or ``""`` for a top-level command), the name of
    the target argument and whether it is optional; ``help`` (default: the docstring's first
    paragraph) is the CLI help.
    """

    action: str = ""
    family: str = ""
    params: tuple[Param, ...] = ()
    target: Literal["required", "optional", "none"] = "required"
    reversible: bool = False
    exclusive: bool = False
    disruptive: bool = False
    weight: float = 0.0
    generatable: bool = True
    cleared_by: str | None = None
    #: a generated step holds every node (no other disruptive step on explicit nodes overlaps)
    holds_all_nodes: bool = False
    cli_verb: str | None = None
    cli_group: str = "fault"
    #: the CLI's name of the target argument, and whether it may be left out
    cli_target_name: str = "NODE"
    cli_target_optional: bool = False
    #: help text (default: the first paragraph of the class docstring)
    help: str = ""
    #: what a node's implementation must support for this fault (see harness.nodekinds.base):
    #: ``network`` (its proxies), ``partition`` (per-link proxies), ``churn``, ``behaviour`` and
    #: ``clock`` (its admin interface); None: no requirement
    node_capability: str | None = "network"

    def capability(self, params: Mapping[str, Any]) -> str | None:
        """The node capability this application needs (a toxic on one link needs per-link
        proxies)."""
        return self.node_capability

    @property
    def verb(self) -> str:
        return self.cli_verb or self.action.replace("_", "-")

    @property
    def summary(self) -> str:
        doc = (self.help or type(self).__doc__ or self.action).strip()
        return " ".join(doc.split("\n\n")[0].split())

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    # -- parameters --------------------------------------------------------------------------
    def parse(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The given parameters checked: unknown or missing ones, types and ranges (target
        parameters parsed into :class:`Target`). Defaults are not filled in. Idempotent."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ParamError(f"action {self.action!r} has no parameter(s) {', '.join(unknown)}; "
                             f"accepted: {', '.join(known) or 'none'}")
        missing = [p.name for p in self.params if p.required and params.get(p.name) is None]
        if missing:
            raise ParamError(f"action {self.action!r} needs parameter(s) {', '.join(missing)}")
        out = {k: known[k].check(self.action, v) for k, v in params.items() if v is not None}
        self.check(self.complete(out))
        return out

    def complete(self, parsed: Mapping[str, Any]) -> dict[str, Any]:
        """``parsed`` with the defaults filled in; parameters that are ``None`` (not given and
        without a default) are left out."""
        out: dict[str, Any] = {}
        for p in self.params:
            v = parsed.get(p.name, None if p.required else p.default)
            if v is not None:
                out[p.name] = v
        return out

    def check(self, params: Mapping[str, Any]) -> None:
        """Checks across parameters (``params`` complete); raise :class:`ParamError`."""

    def generate(self, rng: random.Random) -> dict[str, Any]:
        """Random parameters for a generated schedule (draws only from ``rng``)."""
        return {}

    def pick_nodes(self, rng: random.Random, pool: Sequence[str],
                   free: Sequence[str]) -> list[str] | None:
        """Explicit nodes for a generated schedule step: ``pool`` are all nodes, ``free`` those
        not busy with a fault that would clash; None skips the step."""
        return [rng.choice(list(free))] if free else None

    # -- effect ------------------------------------------------------------------------------
    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        """Do it, recording in ``fault`` the nodes/links hit and what undo needs. On an
        exception the caller undoes what ``fault`` records (reversible kinds)."""
        raise NotImplementedError

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        """Undo ``fault``; returns the error of every step that failed (empty: all undone)."""
        raise FaultError(f"{self.action} cannot be undone (it is not a lasting fault)")

    def reset(self, ctx: FaultContext, nodes: list[str]) -> list[str]:
        """For ``clear``: put ``nodes`` back to normal regardless of who changed them; returns
        errors. Only kinds with ``cleared_by == "node_side"`` are asked."""
        return []

    def event_params(self, complete: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters as recorded on the timeline (targets in their string form)."""
        return {k: str(v) if isinstance(v, Target) else v for k, v in complete.items()}

    def cli_inputs(self, target: Target | None, given: dict[str, Any]
                   ) -> tuple[Target | None, dict[str, Any]]:
        """Adjust what the CLI parsed (hook; e.g. ``--link A:B`` for the toxics)."""
        return target, given

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.action!r} ({self.family})>"


__all__ = ["FaultKind", "Param", "ParamError", "REQUIRED", "Request"]
