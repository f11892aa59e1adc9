"""The registry of fault kinds: action name -> :class:`~harness.faults.families.base.FaultKind`.

:data:`DEFAULT_REGISTRY` holds the built-in families; it is immutable. A project with its own
fault kinds makes a registry with them (``DEFAULT_REGISTRY.with_kinds(MyFault())``) and passes it
to :class:`harness.faults.Faults` (``registry=``) and to schedules (``Schedule.load(path,
registry=…)``); the CLI's verbs come from :data:`DEFAULT_REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from harness.faults.families.base import FaultKind
from harness.faults.families.behaviours import Misbehave
from harness.faults.families.churn import CHURN
from harness.faults.families.clear import Clear
from harness.faults.families.clock import SkewClock
from harness.faults.families.firewall import FIREWALL
from harness.faults.families.links import LINKS
from harness.faults.families.toxics import TOXICS
from harness.faults.families.wan import Wan


class UnknownAction(ValueError):
    """No fault kind is registered under that name."""


class Registry:
    """Fault kinds by action name, in registration order (the order the CLI lists them)."""

    def __init__(self, kinds: Iterable[FaultKind]) -> None:
        by_action: dict[str, FaultKind] = {}
        verbs: dict[tuple[str, str], str] = {}
        for kind in kinds:
            if not kind.action or not kind.family:
                raise ValueError(f"{kind!r}: a fault kind needs an action and a family")
            if kind.action in by_action:
                raise ValueError(f"two fault kinds named {kind.action!r}: "
                                 f"{by_action[kind.action]!r} and {kind!r}")
            verb = (kind.cli_group, kind.verb)
            if verb in verbs:
                raise ValueError(f"fault kinds {verbs[verb]!r} and {kind.action!r} both want "
                                 f"the CLI verb {' '.join(v for v in verb if v)!r}")
            by_action[kind.action] = kind
            verbs[verb] = kind.action
        self._kinds: Mapping[str, FaultKind] = MappingProxyType(by_action)

    def get(self, action: str) -> FaultKind:
        try:
            return self._kinds[action]
        except KeyError:
            raise UnknownAction(f"unknown fault action {action!r}; known: "
                                f"{', '.join(self._kinds)}") from None

    def __contains__(self, action: object) -> bool:
        return action in self._kinds

    def __iter__(self) -> Iterator[FaultKind]:
        return iter(self._kinds.values())

    def __len__(self) -> int:
        return len(self._kinds)

    def actions(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def families(self) -> dict[str, list[FaultKind]]:
        out: dict[str, list[FaultKind]] = {}
        for kind in self:
            out.setdefault(kind.family, []).append(kind)
        return out

    def with_kinds(self, *kinds: FaultKind) -> Registry:
        """A new registry with these kinds added (names must be new)."""
        return Registry([*self, *kinds])

    def default_mix(self) -> Mapping[str, float]:
        """Weights a generated schedule draws actions with by default."""
        return MappingProxyType({k.action: k.weight for k in self if k.weight > 0})

    def exclusive(self) -> frozenset[str]:
        """Actions that take a node out of service."""
        return frozenset(k.action for k in self if k.exclusive)


#: the built-in families: toxics (+ the WAN profile), links, firewall, clock, node behaviours,
#: churn, clear
DEFAULT_REGISTRY = Registry([*TOXICS, Wan(), *LINKS, *FIREWALL, SkewClock(), Misbehave(),
                             *CHURN, Clear()])
#: what Schedule.generate draws from by default (weights)
DEFAULT_MIX = DEFAULT_REGISTRY.default_mix()

__all__ = ["DEFAULT_MIX", "DEFAULT_REGISTRY", "Registry", "UnknownAction"]
