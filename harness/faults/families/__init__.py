"""Fault families, as Jepsen's nemesis packages: each kind of fault is one object holding its
parameters (validation, CLI options), its random parameters for generated schedules, apply and
undo; :mod:`~harness.faults.families.registry` maps action names to them.

- :mod:`~harness.faults.families.toxics` — Toxiproxy toxics, one module per toxic type
  (latency, bandwidth, timeout, reset, slow_close, slicer, limit_data), on a node or a link;
- :mod:`~harness.faults.families.links` — down/up of a node's proxy, partition/heal;
- :mod:`~harness.faults.families.behaviours` — misbehave (node behaviours);
- :mod:`~harness.faults.families.churn` — kill, stop, start, restart, pause, unpause,
  decommission, recommission, add_nodes;
- :mod:`~harness.faults.families.clock` — skew_clock;
- :mod:`~harness.faults.families.clear` — clear (undo everything on some nodes).

See docs/faults.md "Fault families" for how to add one.
"""

from harness.faults.families.base import REQUIRED, FaultKind, Param, ParamError, Request
from harness.faults.families.registry import DEFAULT_MIX, DEFAULT_REGISTRY, Registry, UnknownAction

__all__ = ["DEFAULT_MIX", "DEFAULT_REGISTRY", "REQUIRED", "FaultKind", "Param", "ParamError",
           "Registry", "Request", "UnknownAction"]
