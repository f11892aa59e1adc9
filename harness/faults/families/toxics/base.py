"""What every Toxiproxy toxic fault shares: the target node's proxy or a link proxy, the stream,
the toxic's name, and its removal.

A toxic kind (one module per Toxiproxy toxic type, as Toxiproxy's own registry has) subclasses
:class:`ToxicFault`, names its ``toxic_type``, declares its parameters (plus :data:`LINK_PARAMS`)
and maps them to the toxic's attributes in :meth:`ToxicFault.attributes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.faults.context import FaultContext, raise_errors
from harness.faults.families.base import FaultKind, Param, ParamError, Request
from harness.faults.fault import Attempts, Fault
from harness.faults.targets import Target
from harness.faults.toxiproxy import STREAMS

#: parameters every toxic takes after its own
LINK_PARAMS = (
    Param("link", Target, None,
          "Only NODE's traffic to this target; or A:B (A->B when a side has colons): only A's "
          "traffic to B, NODE being A, B or left out."),
    Param("stream", str, "downstream", "downstream: data from the node; upstream: data to it.",
          choices=(*STREAMS, "both")),
)

#: prefixes of target specs that contain a colon themselves (not an A:B link)
_SPEC_PREFIXES = ("random:", "swarm:", "swarm-of:", "swarm_of:")


def split_link(link: str) -> tuple[str | None, str]:
    """``A:B`` or ``A->B`` -> (A, B); a plain target (``B``, ``random:2``) -> (None, B). Write
    ``A->B`` when a side is a spec with colons (``random:1->sn02``)."""
    if "->" in link:
        src, _, dst = link.partition("->")
    elif ":" in link and not link.lower().startswith(_SPEC_PREFIXES):
        src, _, dst = link.partition(":")
    else:
        return None, link.strip()
    src, dst = src.strip(), dst.strip()
    if not src or not dst:
        raise ParamError(f"--link {link!r}: write A:B or A->B (A's traffic to B)")
    return src, dst


class ToxicFault(FaultKind):
    """A Toxiproxy toxic on the target's proxy (every connection to the node) or, with
    ``link``, on link proxies (only the source's traffic to the destination)."""

    family = "toxics"
    toxic_type = ""
    reversible = True
    cleared_by = "network"
    cli_target_optional = True

    def attributes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The toxic's Toxiproxy attributes from the complete parameters."""
        raise NotImplementedError

    def capability(self, params: Mapping[str, Any]) -> str | None:
        return "partition" if params.get("link") is not None else "network"

    def toxic_name(self, stream: str, tag: str | None) -> str:
        return f"{self.toxic_type}_{stream}" + (f"_{tag}" if tag else "")

    def apply(self, ctx: FaultContext, fault: Fault, req: Request) -> None:
        stream = req.params["stream"]
        streams = list(STREAMS) if stream == "both" else [stream]
        link = req.params.get("link")
        if link is None:
            fault.nodes = req.nodes(ctx)
            targets = [(p, st) for n in fault.nodes for p in ctx.proxies_of(n) for st in streams]
        else:
            if req.target is None:
                raise ParamError(f"{self.action} on a link needs a source target")
            pairs = ctx.pairs(req.target, link, req.rng, req.exclude)
            ctx.require(sorted({n for pair in pairs for n in pair}), "partition")
            fault.links = pairs
            fault.nodes = sorted({s for s, _ in fault.links})
            for s, d in fault.links:
                ctx.ensure_link(fault, s, d, enabled=None)
            # a pair link between real servers has more than one proxy (ctx.link_toxic_targets)
            targets = [t for s, d in fault.links for st in streams
                       for t in ctx.link_toxic_targets(s, d, st)]
        attributes = self.attributes(req.params)
        tp = ctx.toxiproxy
        for proxy, st in targets:
            name = self.toxic_name(st, req.tag)
            if (proxy, name) in fault.toxics:
                continue  # a pair link's mirror of a link that is in the fault itself
            # set semantics: applying the same fault again replaces it
            tp.remove_toxic(proxy, name, missing_ok=True)
            tp.add_toxic(proxy, self.toxic_type, attributes, stream=st, name=name)
            fault.toxics.append((proxy, name))

    def undo(self, ctx: FaultContext, fault: Fault) -> list[str]:
        attempts = Attempts()
        if not (fault.toxics or fault.created_links):
            return []
        tp = ctx.toxiproxy
        for proxy, toxic in fault.toxics:
            with attempts.step(f"remove toxic {toxic} of {proxy}"):
                tp.remove_toxic(proxy, toxic, missing_ok=True)
        links = set(fault.created_links) | {ctx.link_name(s, d) for s, d in fault.links}
        if links:
            with attempts.step("remove link proxies"):
                raise_errors(ctx.drop_idle_links(links))
        return attempts.errors

    def cli_inputs(self, target: Target | None, given: dict[str, Any]
                   ) -> tuple[Target | None, dict[str, Any]]:
        """``NODE --link A:B`` (NODE, if given, is A or B), ``--link A:B`` alone, or
        ``NODE --link B`` (NODE is the source)."""
        link = given.get("link")
        if link is None:
            if target is None:
                raise ParamError("give a NODE (e.g. sn01, random:2, swarm-of:05…) or --link A:B")
            return target, given
        src, dst = split_link(str(link))
        if src is None:
            if target is None:
                raise ParamError(f"--link {link!r} has no source: write --link A:B or give NODE")
            return target, given
        a, b = Target.parse(src), Target.parse(dst)
        if target is not None and target not in (a, b):
            raise ParamError(f"NODE {target} is not an end of --link {link}: --link A:B means "
                             "A's traffic to B; give NODE as A or B, or leave it out")
        return a, {**given, "link": b}


__all__ = ["LINK_PARAMS", "ToxicFault", "split_link"]
