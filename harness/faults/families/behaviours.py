"""The node-behaviour family: ``misbehave`` switches a node's misbehaviours
(``PUT /admin/v1/behaviours``: drop stores, drop or corrupt onion relays, delay responses)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from harness.faults.context import FaultContext
from harness.faults.families.base import FaultKind, Param, ParamError, Request
from harness.faults.fault import Attempts, Fault

#: a node's behaviours when it behaves
DEFAULT_BEHAVIOURS: Mapping[str, Any] = {"drop_stores": False, "drop_relays": False,
                                         "corrupt_relays": False, "delay_ms": 0}
BEHAVIOURS = tuple(DEFAULT_BEHAVIOURS)


class Misbehave(FaultKind):
    """Switch NODE's misbehaviours (drop stores, drop/corrupt onion relays, delay responses);
    removal restores their previous values."""

    action = "misbehave"
    family = "behaviours"
    params = (Param("drop_stores", bool, None, "Accept stores but keep nothing."),
              Param("drop_relays", bool, None, "Drop onion requests it should relay."),
              Param("corrupt_relays", bool, None, "Corrupt onion requests it relays."),
              Param("delay_ms", int, None, "Delay every storage-port response.", minimum=0))
    reversible = True
    cleared_by = "node_side"
    node_capability = "behaviour"

    def check(self, params: Mapping[str, Any]) -> None:
        if not params:
            raise ParamError(f"misbehave needs at least one behaviour among "
                             f"{', '.join(BEHAVIOURS)}")

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        fault.nodes = req.nodes(ctx)
        for n in fault.nodes:
            prev = ctx.net.node_admin(n, "behaviours") or {}
            fault.previous[n] = {k: prev.get(k, DEFAULT_BEHAVIOURS[k]) for k in req.params}
            ctx.net.node_admin(n, "behaviours", dict(req.params), method="PUT")

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        attempts = Attempts()
        for n, prev in fault.previous.items():
            with attempts.step(f"restore behaviours of {n}"):
                ctx.net.node_admin(n, "behaviours", prev, method="PUT")
        return attempts.errors

    def reset(self, ctx: FaultContext, nodes: list[str]) -> list[str]:
        calls = {n: ("behaviours", dict(DEFAULT_BEHAVIOURS), "PUT") for n in nodes
                 if ctx.supports(n, "behaviour") and ctx.reachable(n)}
        return [f"{n}: resetting behaviours failed: {res}"
                for n, res in ctx.admin_many(calls).items() if isinstance(res, Exception)]

    def generate(self, rng: random.Random) -> dict[str, Any]:
        delay = rng.choice([200, 1000])  # drawn first: the order the draws have always had
        return rng.choice([{"drop_stores": True}, {"drop_relays": True},
                           {"corrupt_relays": True}, {"delay_ms": delay}])


__all__ = ["BEHAVIOURS", "DEFAULT_BEHAVIOURS", "Misbehave"]
