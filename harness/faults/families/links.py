"""The link family: whole-node reachability (``down``/``up`` of a node's proxy) and partitions
(``partition``/``heal``: disabled link proxies between the sides)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from harness.faults.context import FaultContext, raise_errors
from harness.faults.families.base import FaultKind, Param, Request
from harness.faults.fault import Attempts, Fault
from harness.faults.targets import Target, TargetError


class Down(FaultKind):
    """Make NODE unreachable: its proxy stops listening and drops every connection (the node
    process keeps running and keeps talking to others)."""

    action = "down"
    family = "links"
    reversible = True
    exclusive = True
    disruptive = True
    weight = 2
    cleared_by = "network"

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        fault.nodes = req.nodes(ctx)
        for n in fault.nodes:
            for proxy in ctx.proxies_of(n):
                ctx.toxiproxy.disable(proxy)
                fault.disabled.append(proxy)

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        attempts = Attempts()
        for proxy in fault.disabled:
            with attempts.step(f"enable {proxy}"):
                ctx.enable_if_present(proxy)
        return attempts.errors


class Up(FaultKind):
    """Undo 'down': NODE's proxy listens again."""

    action = "up"
    family = "links"
    generatable = False

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        fault.nodes = req.nodes(ctx)
        proxies = {p for n in fault.nodes for p in ctx.proxies_of(n)}
        for proxy in sorted(proxies):
            ctx.toxiproxy.enable(proxy)
        for other in ctx.active:
            if other.action == Down.action:
                other.disabled = [p for p in other.disabled if p not in proxies]


class Partition(FaultKind):
    """Cut node-to-node traffic between SIDE_A and --from (default: every other node), in both
    directions; clients still reach every node."""

    action = "partition"
    family = "links"
    params = (Param("from", Target, None, "The other side (default: every other node).",
                    cli="--from"),)
    reversible = True
    disruptive = True
    holds_all_nodes = True
    weight = 1
    cleared_by = "network"
    cli_group = ""
    cli_target_name = "SIDE_A"
    node_capability = "partition"

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        a = req.nodes(ctx)
        other = req.params.get("from")
        b = ([n for n in ctx.view().names if n not in a] if other is None
             else req.nodes(ctx, other))
        overlap = sorted(set(a) & set(b))
        if overlap:
            raise TargetError(f"partition: {', '.join(overlap)} on both sides")
        if not a or not b:
            raise TargetError(f"partition needs nodes on both sides (got {a} and {b})")
        fault.nodes = sorted(set(a) | set(b))
        fault.result = {"side_a": a, "side_b": b}
        for x, y in [(x, y) for x in a for y in b] + [(y, x) for x in a for y in b]:
            fault.links.append((x, y))
            ctx.ensure_link(fault, x, y, enabled=False)

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        attempts = Attempts()
        if fault.links or fault.created_links:
            with attempts.step("remove partition links"):
                links = set(fault.created_links) | {ctx.link_name(s, d) for s, d in fault.links}
                raise_errors(ctx.release_cut_links(links))
        return attempts.errors

    def pick_nodes(self, rng: random.Random, pool: Sequence[str],
                   free: Sequence[str]) -> list[str] | None:
        if len(pool) < 2:
            return None
        return sorted(rng.sample(list(pool), rng.randint(1, len(pool) // 2)))


class Heal(FaultKind):
    """End every partition (removes the cut link proxies and their peer overrides; link
    proxies that still carry link toxics are re-enabled). Works from a fresh process."""

    action = "heal"
    family = "links"
    target = "none"
    generatable = False
    cli_group = ""

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        index = ctx.link_index()
        proxies = ctx.toxiproxy.proxies()
        cut = {n: index[n] for n in sorted(index) if not proxies[n].enabled}
        fault.links = sorted(cut.values())
        fault.nodes = sorted({x for pair in fault.links for x in pair})
        errors = ctx.release_cut_links(set(cut))
        for f in ctx.active:
            if f.action == Partition.action:
                f.removed = True
        ctx.active = [f for f in ctx.active if f.action != Partition.action]
        fault.result = {"errors": errors} if errors else None


LINKS: tuple[FaultKind, ...] = (Down(), Up(), Partition(), Heal())

__all__ = ["LINKS", "Down", "Heal", "Partition", "Up"]
