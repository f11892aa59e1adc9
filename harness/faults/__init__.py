"""Fault injection for testnets, separated like Jepsen's nemesis and generator.

- :mod:`~harness.faults.targets` — which nodes (``Target``: names, ``random:N``, ``swarm-of:…``,
  ``guard``, …), parsed once at the edge, resolved against the live testnet with a seeded RNG;
- :mod:`~harness.faults.families` — what can be done: one object per kind of fault (toxics,
  links and partitions, node behaviours, churn, clock, clear) with its parameters, apply, undo
  and random parameters, in a registry by action name;
- :mod:`~harness.faults.actions` — ``Faults``: applies registered faults to a testnet and undoes
  them (on top of :mod:`~harness.faults.context`: Toxiproxy, link proxies, node admin);
- :mod:`~harness.faults.schedule` — when (``Schedule``: seeded, replayable, JSON files; steps in
  :mod:`~harness.faults.step`, generation in :mod:`~harness.faults.generate`);
  :mod:`~harness.faults.runner` — ``run``;
- :mod:`~harness.faults.timeline` — what happened (``Timeline`` of events, JSON lines);
- :mod:`~harness.faults.toxiproxy` — the Toxiproxy API client.

See docs/faults.md.
"""

from harness.faults.actions import ACTIONS, Faults, TargetLike
from harness.faults.families import (
    DEFAULT_MIX,
    DEFAULT_REGISTRY,
    FaultKind,
    Param,
    ParamError,
    Registry,
    UnknownAction,
)
from harness.faults.fault import Fault, FaultError
from harness.faults.runner import RealClock, RunResult, VirtualClock, run
from harness.faults.schedule import Schedule, ScheduleError, Step
from harness.faults.targets import NetworkView, NodeInfo, Target, TargetError
from harness.faults.timeline import Event, Timeline
from harness.faults.toxiproxy import ToxiproxyClient, ToxiproxyError

__all__ = [
    "ACTIONS", "DEFAULT_MIX", "DEFAULT_REGISTRY", "Event", "Fault", "FaultError", "FaultKind",
    "Faults", "NetworkView", "NodeInfo", "Param", "ParamError", "RealClock", "Registry",
    "RunResult", "Schedule", "ScheduleError", "Step", "Target", "TargetError", "TargetLike",
    "Timeline", "ToxiproxyClient", "ToxiproxyError", "UnknownAction", "VirtualClock", "run",
]
