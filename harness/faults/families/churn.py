"""The churn family: process-level faults delegated to :class:`harness.network.Testnet` (kill,
stop, start, restart, pause, unpause, decommission, recommission), ``add_nodes``, and the seed
going away (``stop_seed``: the seed process / container stopped, started again on removal).

A node started, restarted or unpaused through the faults is pointed at its link proxies again
(see :meth:`harness.faults.context.FaultContext.churn_call`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from harness import rpc
from harness.faults.context import FaultContext
from harness.faults.families.base import FaultKind, Param, Request
from harness.faults.fault import Attempts, Fault, FaultError


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


class StopSeed(FaultKind):
    """Stop the seed (graceful, or SIGKILL / docker kill with --kill): nodes and clients keep
    the node lists they have; removal starts it again from its saved state (every node's proof
    age restarts then, as after any seed restart)."""

    action = "stop_seed"
    family = "churn"
    node_capability = None
    target = "none"
    reversible = True
    params = (Param("kill", bool, False, "SIGKILL (docker kill) instead of a graceful stop."),
              Param("timeout", float, 30.0, "Seconds to wait for the restarted seed to answer.",
                    minimum=0))

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        net = ctx.net
        if not net.backend.is_running(net.state, "seed"):
            raise FaultError(f"the seed of testnet {net.name!r} is not running")
        # the backends stop a runtime by its name and runtime record; the seed's is
        # ``seed_runtime`` (process: its pid; docker: the container named after "seed")
        seed = SimpleNamespace(name="seed", runtime=net.state.seed_runtime)
        net.backend.stop_node(net.state, seed, kill=req.params["kill"])  # type: ignore[arg-type]
        fault.result = {"seed": net.seed_url, "kill": req.params["kill"]}
        fault.params["timeout"] = req.params["timeout"]

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        attempts = Attempts()
        with attempts.step("start the seed"):
            start_seed(ctx.net, timeout=float(fault.params.get("timeout", 30.0)))
        return attempts.errors


def start_seed(net: Any, *, timeout: float = 30.0) -> None:
    """Start a stopped seed of ``net`` again (same command line, same data directory: it
    restores its chain) and wait until it answers ``get_n_service_nodes``."""
    if not net.backend.is_running(net.state, "seed"):
        container = getattr(net.backend, "_container", None)
        existing = container(net.state, "seed") if container is not None else None
        if existing is not None:  # docker: the stopped container keeps its command and volume
            existing.start()
        else:
            net.backend.start_seed(net.state, net.seed_argv(), net.seed_env())
            net._save()  # the new pid (``down`` finds it by its mark anyway)

    net.wait_for(lambda: seed_answers(net.seed_url), timeout=timeout, poll=0.2,
                 what="the restarted seed answering get_n_service_nodes")


def seed_answers(seed_url: str) -> bool:
    """The seed at ``seed_url`` answers ``get_n_service_nodes`` now."""
    async def ask() -> bool:
        async with rpc.new_session() as s:
            await rpc.seed_rpc(s, seed_url, "get_n_service_nodes", {"active_only": True})
        return True

    try:
        return rpc.run_sync(ask())
    except rpc.RpcError:
        return False


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
    StopSeed(),
)

__all__ = ["CHURN", "AddNodes", "Churn", "StopSeed", "seed_answers", "start_seed"]
