"""The churn family: process-level faults delegated to :class:`harness.network.Testnet` (kill,
stop, start, restart, pause, unpause, decommission, recommission) and ``add_nodes``.

A node started, restarted or unpaused through the faults is pointed at its link proxies again
(see :meth:`harness.faults.context.FaultContext.churn_call`)."""

from __future__ import annotations

from typing import Any

from harness.faults.context import FaultContext
from harness.faults.families.base import FaultKind, Param, Request
from harness.faults.fault import Attempts, Fault


class Churn(FaultKind):
    """One ``Testnet`` lifecycle operation on the target nodes; ``undo_action`` (if any) is
    the operation that undoes it (kill -> start, pause -> unpause, …)."""

    family = "churn"
    node_capability = "churn"

    def __init__(self, action: str, undo_action: str | None = None, *, help: str,
                 exclusive: bool = False, weight: float = 0.0,
                 generatable: bool = True) -> None:
        self.action = action
        self.undo_action = undo_action
        self.help = help
        self.reversible = undo_action is not None
        self.exclusive = self.disruptive = exclusive
        self.weight = weight
        self.generatable = generatable

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        for n in req.nodes(ctx):
            ctx.churn_call(self.action, n)
            fault.nodes.append(n)  # a partial failure undoes only what was done

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        if self.undo_action is None:
            return super().undo(ctx, fault)
        attempts = Attempts()
        for n in fault.nodes:
            with attempts.step(f"{self.undo_action} {n}"):
                ctx.churn_call(self.undo_action, n)
        return attempts.errors


class AddNodes(FaultKind):
    """Join --count new nodes and wait until the testnet is ready again."""

    action = "add_nodes"
    family = "churn"
    node_capability = None
    target = "none"
    params = (Param("count", int, 1, "Nodes to add.", minimum=1),
              Param("timeout", float, 90.0, "Seconds to wait for the testnet to be ready.",
                    minimum=0))

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        new = ctx.net.add_nodes(req.params["count"], timeout=req.params["timeout"])
        fault.nodes = [n.name for n in new]

    def generate(self, rng: Any) -> dict[str, Any]:
        return {"count": 1}


CHURN: tuple[FaultKind, ...] = (
    Churn("kill", "start", exclusive=True, weight=2,
          help="SIGKILL NODE (process) / docker kill; data is kept, removal starts it again."),
    Churn("stop", "start", exclusive=True, help="Stop NODE gracefully; removal starts it again."),
    Churn("start", help="Start a stopped NODE.", generatable=False),
    Churn("restart", help="Stop and start NODE."),
    Churn("pause", "unpause", exclusive=True, weight=1,
          help="Freeze NODE (SIGSTOP / docker pause); removal unpauses it."),
    Churn("unpause", help="Unfreeze NODE.", generatable=False),
    Churn("decommission", "recommission", exclusive=True,
          help="Decommission NODE at the seed (it leaves its swarm); removal recommissions it."),
    Churn("recommission", help="Recommission NODE at the seed.", generatable=False),
    AddNodes(),
)

__all__ = ["CHURN", "AddNodes", "Churn"]
