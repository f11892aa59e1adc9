"""Fault injection for testnets, separated like Jepsen's nemesis and generator.

- :mod:`~harness.faults.targets` — which nodes (``Target``: names, ``random:N``, ``swarm-of:…``,
  ``guard``, …), resolved against the live testnet with a seeded RNG;
- :mod:`~harness.faults.actions` — what is done (``Faults``: Toxiproxy toxics, link proxies,
  partitions, clock skew, misbehaviour, churn) and how it is undone;
- :mod:`~harness.faults.schedule` — when (``Schedule``: seeded, replayable, JSON files; ``run``);
- :mod:`~harness.faults.timeline` — what happened (``Timeline`` of events, JSON lines);
- :mod:`~harness.faults.toxiproxy` — the Toxiproxy API client.

See docs/faults.md.
"""

from harness.faults.actions import ACTIONS, Fault, FaultError, Faults
from harness.faults.schedule import RealClock, RunResult, Schedule, ScheduleError, Step, VirtualClock, run
from harness.faults.targets import NetworkView, NodeInfo, Target, TargetError
from harness.faults.timeline import Event, Timeline
from harness.faults.toxiproxy import ToxiproxyClient, ToxiproxyError

__all__ = [
    "ACTIONS", "Event", "Fault", "FaultError", "Faults", "NetworkView", "NodeInfo", "RealClock",
    "RunResult", "Schedule", "ScheduleError", "Step", "Target", "TargetError", "Timeline",
    "ToxiproxyClient", "ToxiproxyError", "VirtualClock", "run",
]
