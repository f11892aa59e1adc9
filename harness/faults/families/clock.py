"""The clock family: ``skew_clock`` shifts a node's clock (``PUT /admin/v1/clock``)."""

from __future__ import annotations

import random
from typing import Any

from harness.faults.context import FaultContext
from harness.faults.families.base import FaultKind, Param, Request
from harness.faults.fault import Attempts, Fault


class SkewClock(FaultKind):
    """Skew NODE's clock by --offset-ms (removal restores the previous offset)."""

    action = "skew_clock"
    family = "clock"
    params = (Param("offset_ms", int, help="Clock offset in milliseconds (may be negative)."),)
    reversible = True
    weight = 1
    cleared_by = "node_side"
    node_capability = "clock"
    cli_verb = "skew"

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        fault.nodes = req.nodes(ctx)
        for n in fault.nodes:
            prev = ctx.net.node_admin(n, "clock")
            fault.previous[n] = int((prev or {}).get("offset_ms", 0))
            ctx.net.node_admin(n, "clock", {"offset_ms": req.params["offset_ms"]}, method="PUT")

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        attempts = Attempts()
        for n, prev in fault.previous.items():
            with attempts.step(f"restore clock of {n}"):
                ctx.net.node_admin(n, "clock", {"offset_ms": prev}, method="PUT")
        return attempts.errors

    def reset(self, ctx: FaultContext, nodes: list[str]) -> list[str]:
        calls = {n: ("clock", {"offset_ms": 0}, "PUT") for n in nodes
                 if ctx.supports(n, "clock") and ctx.reachable(n)}
        return [f"{n}: resetting clock failed: {res}"
                for n, res in ctx.admin_many(calls).items() if isinstance(res, Exception)]

    def generate(self, rng: random.Random) -> dict[str, Any]:
        return {"offset_ms": rng.choice([-1, 1]) * rng.choice([5_000, 30_000, 120_000, 600_000])}


__all__ = ["SkewClock"]
