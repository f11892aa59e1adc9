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

Real servers (pair links, ``NodeKind.routes_pairs``) already reach each other only through link
proxies of their own (``A->B`` and ``A->B-omq``, forwarding to B's proxies); for them the block
points those pair links straight at B's process (HTTPS and OxenMQ ports) and needs no override.
Undo points them back at B's proxies.
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
        fixed = sorted({src for dst in blocked for src in names
                        if src != dst and not ctx.pair_routed(src, dst) and not ctx.has_admin(src)})
        if fixed:
            raise ValueError(
                f"block_clients reroutes the blocked nodes' peers with peer overrides (admin "
                f"interface), which {', '.join(fixed)} ({ctx.node(fixed[0]).kind}) lack; use "
                "nodes with an admin interface or real servers (pair links)")
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
                if ctx.pair_routed(src, dst):
                    # a pair link already carries src's traffic to dst (both proxies): point it
                    # straight at dst's process, no override needed
                    direct_omq = f"{rec.bind_ip or rec.public_ip}:{rec.omq_bind_port}"
                    for proxy_name, target in zip(ctx.link_proxies(src, dst), (direct, direct_omq),
                                                  strict=True):
                        proxy = tp.find_proxy(proxy_name)
                        if proxy is None:
                            raise TargetError(f"block_clients: the pair link {proxy_name} of "
                                              f"{src} -> {dst} is missing from Toxiproxy; "
                                              "restart the testnet (testnet down; testnet up)")
                        upstreams[proxy_name] = proxy.upstream
                        tp.update_proxy(proxy_name, upstream=target)
                        rerouted.append(proxy_name)
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
