"""The firewall family: ``block_clients`` makes an address range unreachable *from clients* (a
national firewall between the client and some nodes) while node-to-node traffic still flows.

How: every node's advertised address is its Toxiproxy proxy, which clients and peers share, and
Toxiproxy cannot tell connections apart by source. So peers are moved off it first: for every
blocked node B and every other node A, a link proxy ``"A->B"`` (the same proxies and peer
overrides single-link faults and partitions use) forwards straight to B's process
(``bind_ip:storage_port``); then B's own proxy is disabled. Whoever only knows B's advertised
address (any client, the built-in one or one under test) is refused; peers reach B through their
link proxies. Undo enables B's proxy again, then removes the link proxies it made (and their
overrides) and points pre-existing link proxies back at B's proxy.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from typing import Any

from harness.faults.context import FaultContext, raise_errors
from harness.faults.families.base import FaultKind, Param, Request
from harness.faults.fault import Attempts, Fault
from harness.faults.targets import TargetError


def blocked_range(ip: str, prefix: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of ``ip`` with ``prefix`` bits (``127.5.6.1``, 22 -> ``127.5.4.0/22``)."""
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


class BlockClients(FaultKind):
    """Make the address range of NODE (its /--prefix network: every node advertised in it)
    unreachable from clients, as a national firewall does; node-to-node traffic keeps flowing
    (peers reach the blocked nodes through link proxies)."""

    action = "block_clients"
    family = "firewall"
    params = (Param("prefix", int, 24, "Length of the blocked network around each target "
                    "node's advertised address (24: its /24; smaller blocks more nodes).",
                    minimum=8),)
    reversible = True
    disruptive = True
    cleared_by = "network"
    #: peers are rerouted with peer overrides and link proxies (as for partitions)
    node_capability = "partition"

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        prefix = int(req.params["prefix"])
        targets = req.nodes(ctx)
        ranges = sorted({blocked_range(ctx.node(n).public_ip, prefix) for n in targets}, key=str)
        names = [n.name for n in ctx.net.state.nodes]
        blocked = sorted(n for n in names
                         if any(ipaddress.ip_address(ctx.node(n).public_ip) in r for r in ranges))
        if len(blocked) == len(names):
            raise TargetError(f"block_clients: {', '.join(str(r) for r in ranges)} holds every "
                              "node of the testnet; a client could reach none")
        ctx.require(names, self.node_capability)
        fixed = [n for n in names if not ctx.has_admin(n)]
        if fixed:
            raise ValueError(
                f"block_clients reroutes every peer with peer overrides (admin interface), which "
                f"{', '.join(fixed)} ({ctx.node(fixed[0]).kind}) lack: the real server's links "
                "are fixed pair links, and blocking clients needs the blocked node's own proxy "
                "free of peer traffic; use a testnet of python nodes")
        fault.nodes = blocked
        fault.result = {"ranges": [str(r) for r in ranges], "blocked": blocked}
        rerouted: list[str] = []
        upstreams: dict[str, str] = {}
        fault.previous = {"rerouted": rerouted, "upstreams": upstreams}
        tp = ctx.toxiproxy
        for dst in blocked:
            rec = ctx.node(dst)
            direct = f"{rec.bind_ip or rec.public_ip}:{rec.storage_port}"
            for src in names:
                if src == dst:
                    continue
                name = ctx.link_name(src, dst)
                proxy = tp.find_proxy(name)
                if proxy is None:
                    listen = ctx._link_listen(src, dst)
                    tp.create_proxy(name, listen=listen, upstream=direct, enabled=True)
                    fault.created_links.append(name)
                else:
                    listen = proxy.listen
                    upstreams[name] = proxy.upstream
                    tp.update_proxy(name, upstream=direct)
                rerouted.append(name)
                ctx._set_override(src, dst, listen)
        for dst in blocked:
            for proxy_name in ctx.proxies_of(dst):
                tp.disable(proxy_name)
                fault.disabled.append(proxy_name)

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        attempts = Attempts()
        for proxy in fault.disabled:
            with attempts.step(f"enable {proxy}"):
                ctx.enable_if_present(proxy)
        upstreams: dict[str, str] = dict(fault.previous.get("upstreams", {}))
        created = set(fault.created_links)
        if created:
            with attempts.step("remove the link proxies of the block"):
                index = ctx.link_index()
                proxies = ctx.toxiproxy.proxies()
                drop = {}
                for name in sorted(created):
                    if name not in index or name not in proxies:
                        continue
                    if proxies[name].toxics or not proxies[name].enabled:
                        # another fault uses it now (a link toxic, a partition): keep it and
                        # send it through the node's proxy again, as link proxies do
                        upstreams[name] = ctx._upstream(index[name][1])
                    else:
                        drop[name] = index[name]
                raise_errors(ctx.delete_links(drop))
        for name, upstream in sorted(upstreams.items()):
            with attempts.step(f"point {name} back at {upstream}"):
                if ctx.toxiproxy.find_proxy(name) is not None:
                    ctx.toxiproxy.update_proxy(name, upstream=upstream)
        return attempts.errors

    def generate(self, rng: random.Random) -> dict[str, Any]:
        return {"prefix": rng.choice([24, 22])}

    def pick_nodes(self, rng: random.Random, pool: Sequence[str],
                   free: Sequence[str]) -> list[str] | None:
        return [rng.choice(list(free))] if len(pool) > 1 and free else None


FIREWALL: tuple[FaultKind, ...] = (BlockClients(),)

__all__ = ["FIREWALL", "BlockClients", "blocked_range"]
