"""The WAN fault kind: a seeded WAN profile (:mod:`harness.faults.wan`: each node placed in a
region, with its delay ± jitter and bandwidth cap) put on every node's proxies as toxics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.faults.families.base import FaultKind, Param, Request
from harness.faults.fault import Attempts, Fault
from harness.faults.wan import WAN_TAG, wan_profile

if TYPE_CHECKING:
    from harness.faults.context import FaultContext


class Wan(FaultKind):
    """Put a seeded WAN profile on every node: each node placed in a region, with that region's
    delay +- jitter and bandwidth cap (harness.faults.wan); removal takes it off."""

    action = "wan"
    family = "toxics"
    params = (Param("seed", str, None, "Seed of the profile [default: the testnet seed]."),
              Param("bandwidth", bool, True, "Also cap each node's bandwidth."))
    target = "none"
    reversible = True
    cleared_by = "network"
    weight = 0
    generatable = False

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        seed = req.params.get("seed")
        if seed is None:
            seed = str(ctx.net.state.topology.get("seed", "0"))
        profile = wan_profile(seed, ctx.view().names)
        ctx.require(profile.nodes, "network")
        fault.nodes = profile.nodes
        fault.result = profile.to_json()
        tag = req.tag or WAN_TAG
        tp = ctx.toxiproxy
        for link in profile.links:
            toxics: list[tuple[str, str, dict[str, Any]]] = [
                ("latency", "downstream", {"latency": link.latency_ms, "jitter": link.jitter_ms})]
            if req.params["bandwidth"]:
                toxics += [("bandwidth", s, {"rate": link.kbps}) for s in ("upstream", "downstream")]
            for proxy in ctx.proxies_of(link.node):
                for kind, stream, attributes in toxics:
                    name = f"{kind}_{stream}_{tag}"
                    tp.remove_toxic(proxy, name, missing_ok=True)  # applying again replaces it
                    tp.add_toxic(proxy, kind, attributes, stream=stream, name=name)
                    fault.toxics.append((proxy, name))

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        attempts = Attempts()
        for proxy, name in fault.toxics:
            with attempts.step(f"remove toxic {name} of {proxy}"):
                ctx.toxiproxy.remove_toxic(proxy, name, missing_ok=True)
        return attempts.errors


__all__ = ["Wan"]
