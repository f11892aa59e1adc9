"""``clear``: remove every fault touching some nodes, whoever applied it (it reads Toxiproxy
and resets the nodes, so it works from a fresh process)."""

from __future__ import annotations

from harness.faults.context import FaultContext
from harness.faults.families.base import FaultKind, Param, Request
from harness.faults.fault import Fault


class Clear(FaultKind):
    """Remove every fault of NODE (default: all nodes): toxics, link proxies, down, and unless
    --network-only clock skew and misbehaviours (nodes that do not answer are listed in the
    result, not raised)."""

    action = "clear"
    family = "maintenance"
    target = "optional"
    params = (Param("node_side", bool, True, "Also reset clock offsets and behaviours "
                    "(--network-only: only remove Toxiproxy faults).",
                    cli="--node-side/--network-only"),)
    generatable = False
    cli_target_optional = True
    node_capability = None

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        view = ctx.view()
        names = req.nodes(ctx) if req.target is not None else view.names + list(view.named)
        node_side = bool(req.params["node_side"])
        fault.nodes = names
        chosen = set(names)
        tp = ctx.toxiproxy
        for n in names:
            for proxy in ctx.proxies_of(n):
                for t in tp.toxics(proxy):
                    tp.remove_toxic(proxy, t.name, missing_ok=True)
                tp.enable(proxy)
        links = {k: v for k, v in ctx.link_index().items() if chosen & set(v)}
        fault.links = sorted(links.values())
        errors = ctx.delete_links(links)
        cleared = {"network"} | ({"node_side"} if node_side else set())
        if node_side:
            for kind in ctx.kinds:
                if kind.cleared_by == "node_side":
                    errors += kind.reset(ctx, names)
        for f in list(ctx.active):
            if set(f.nodes) <= chosen and ctx.kinds.get(f.action).cleared_by in cleared:
                f.removed = True
                ctx.active.remove(f)
        fault.result = {"errors": errors} if errors else None


__all__ = ["Clear"]
