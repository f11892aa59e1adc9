"""What every fault family works with: the testnet, its Toxiproxy, target resolution and the
plumbing of link proxies and node admin calls.

:class:`FaultContext` is the base of :class:`harness.faults.Faults`; the fault kinds of
:mod:`harness.faults.families` receive it in ``apply``/``undo``. Targets arrive here already
parsed (:class:`~harness.faults.targets.Target`); nothing below this layer parses strings.

Link proxies: a single-link fault or a partition puts a Toxiproxy proxy named
``"<src proxy>-><dst proxy>"`` (e.g. ``"sn01->sn02"``) between two nodes and points the source
at it with ``PUT /admin/v1/peer_overrides``. Everything lives in Toxiproxy and in the nodes, so
a fresh process rediscovers the links by name.

Pair links: nodes that cannot be re-pointed at run time (real storage servers,
``NodeKind.routes_pairs``) talk to each other through link proxies that exist from the start
(``sn01->sn02`` for HTTPS and ``sn01->sn02-omq`` for OxenMQ; the seed's node list routes them).
A fault on such a link acts on those proxies and never creates or deletes them.
"""

from __future__ import annotations

import concurrent.futures
import random
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from harness import nodekinds, rpc
from harness.faults.fault import Fault, FaultError
from harness.faults.targets import GuardProvider, NetworkView, Target, TargetError, live_view
from harness.faults.toxiproxy import ToxiproxyClient, ToxiproxyNotFound
from harness.nodekinds.oxen_storage import link_omq_name
from harness.state import NodeRecord, StateError

if TYPE_CHECKING:
    from harness.network import Testnet


class KindInfo(Protocol):
    """What the context needs to know of a fault kind (see ``families.base.FaultKind``)."""

    action: str
    reversible: bool
    #: ``clear`` undoes it (network faults, node-side faults with ``node_side``)
    cleared_by: str | None

    def reset(self, ctx: FaultContext, nodes: list[str]) -> list[str]: ...


class KindLookup(Protocol):
    def get(self, action: str) -> KindInfo: ...

    def __iter__(self) -> Iterator[KindInfo]: ...


class FaultContext:
    """A testnet, its Toxiproxy, the faults in force and how targets are resolved.

    ``seed`` (default: the testnet's seed) seeds random targets: call ``i`` (counted from
    ``first_call``) draws from ``random.Random(f"{seed}/faults/{i}")``; schedule steps pass
    their own RNG. ``guard_provider`` resolves the ``guard`` target (the client registers it).
    """

    def __init__(self, net: Testnet, kinds: KindLookup, seed: str | None = None, *,
                 guard_provider: GuardProvider | None = None,
                 toxiproxy: ToxiproxyClient | None = None,
                 view: Callable[[], NetworkView] | None = None,
                 first_call: int = 0) -> None:
        self.net = net
        self.kinds = kinds
        self.seed = seed if seed is not None else str(net.state.topology.get("seed", "0"))
        self.guard_provider = guard_provider
        self._toxiproxy = toxiproxy
        self._view = view
        #: reversible faults applied through this object and not removed yet (oldest first)
        self.active: list[Fault] = []
        self._calls = first_call

    @property
    def toxiproxy(self) -> ToxiproxyClient:
        if self._toxiproxy is None:
            url = self.net.state.toxiproxy_url
            if not url:
                raise FaultError(
                    f"testnet {self.net.name!r} has no Toxiproxy (state has no toxiproxy_url): "
                    "network faults need a proxy in front of every node; start the testnet with "
                    "proxies enabled (Topology.proxies=True, the default)")
            self._toxiproxy = ToxiproxyClient(url)
        return self._toxiproxy

    def set_guard_provider(self, provider: GuardProvider | None) -> None:
        self.guard_provider = provider

    # -- targets -----------------------------------------------------------------------------
    def next_rng(self) -> random.Random:
        rng = random.Random(f"{self.seed}/faults/{self._calls}")
        self._calls += 1
        return rng

    def view(self, live_swarms: bool = False) -> NetworkView:
        if live_swarms:
            return self._view() if self._view else live_view(self.net.state)
        return NetworkView.from_state(self.net.state)

    def nodes_of(self, target: Target, rng: random.Random | None = None,
                 exclude: Sequence[str] = ()) -> list[str]:
        """The node names ``target`` selects now (see :meth:`Target.resolve`)."""
        if rng is None and target.is_random:
            rng = self.next_rng()
        try:
            view = self.view(live_swarms=target.needs_swarms)
        except rpc.RpcError as e:
            raise TargetError(f"target {target}: cannot read the swarms from the seed: {e}") \
                from None
        return target.resolve(view, rng, guard_provider=self.guard_provider, exclude=exclude)

    def pairs(self, src: Target, dst: Target, rng: random.Random | None,
              exclude: Sequence[str]) -> list[tuple[str, str]]:
        """(source, destination) node pairs of a link fault: every source with every other
        destination."""
        srcs = self.nodes_of(src, rng, exclude)
        dsts = self.nodes_of(dst, rng, exclude)
        pairs = [(s, d) for s in srcs for d in dsts if s != d]
        if not pairs:
            raise TargetError(f"link fault {src} -> {dst}: no pair of distinct nodes "
                              f"(sources {srcs}, destinations {dsts})")
        return pairs

    # -- nodes -------------------------------------------------------------------------------
    def node(self, name: str) -> NodeRecord:
        return self.net.state.node(name)

    def proxy_of(self, name: str) -> str:
        rec = self.node(name)
        if not rec.proxy:
            raise FaultError(
                f"node {name} of testnet {self.net.name!r} has no Toxiproxy proxy: network "
                "faults need the proxy layout (Topology.proxies=True, the default)")
        return rec.proxy

    def proxies_of(self, name: str) -> list[str]:
        """Every proxy in front of ``name`` (one per port it serves, e.g. HTTPS and the real
        server's OxenMQ): a node-level network fault acts on all of them."""
        self.proxy_of(name)  # a clear error when the testnet has no proxies
        return nodekinds.proxy_names(self.node(name))

    def require(self, nodes: Sequence[str], capability: str) -> None:
        """Refuse (ValueError naming the node and its implementation) when a node's
        implementation cannot take faults of ``capability`` (e.g. clock skew needs the admin
        interface that real storage servers lack)."""
        for n in nodes:
            nodekinds.check_fault(self.node(n), capability, self.net.state.backend)

    def has_admin(self, node: str) -> bool:
        return nodekinds.record_kind(self.node(node)).has_admin

    def supports(self, node: str, capability: str) -> bool:
        """Whether ``node``'s implementation takes faults of ``capability`` (the file server
        has an admin interface but no behaviours or clock)."""
        return nodekinds.kind_class(self.node(node).kind)().supports(capability)

    def reachable(self, node: str) -> bool:
        """Whether ``node``'s admin interface can answer (running and not paused)."""
        return (self.net.backend.is_running(self.net.state, node)
                and not self.node(node).runtime.get("paused"))

    def admin_many(self, calls: dict[str, tuple[str, Any, str]]) -> dict[str, Any]:
        """Node admin calls (through ``Testnet.node_admin``) in parallel: node -> result or
        the exception it raised."""
        def one(node: str) -> Any:
            path, body, method = calls[node]
            try:
                return self.net.node_admin(node, path, body, method=method)
            except (rpc.RpcError, StateError) as e:
                return e

        if not calls:
            return {}
        names = sorted(calls)
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    def churn_call(self, action: str, node: str) -> None:
        """``Testnet.<action>(node)``; a node brought back is pointed at its link proxies."""
        getattr(self.net, action)(node)
        if action in ("start", "restart", "unpause"):
            self.restore_overrides(node, full=action == "unpause")

    def restore_overrides(self, node: str, *, full: bool = False, timeout: float = 30.0) -> None:
        """Point ``node`` at exactly the link proxies that exist for it: a restarted node forgot
        its overrides; an unpaused one (``full``) may also keep overrides of links removed while
        it was frozen, so every other peer's override is reset first."""
        if not self.net.state.toxiproxy_url:
            return
        if not self.has_admin(node):
            return  # its links are pair links: the seed's node list routes them, restarts included
        proxies = self.toxiproxy.proxies()
        mine = [(name, dst) for name, (src, dst) in self.link_index().items()
                if src == node and not self.pair_routed(src, dst)]
        if not mine and not full:
            return

        def answering() -> bool:
            return not isinstance(self.admin_many({node: ("state", None, "GET")})[node],
                                  Exception)

        self.net.wait_for(answering, timeout=timeout, what=f"admin interface of {node}")
        body: dict[str, str | None] = {}
        if full:
            body = {n.pubkey_ed25519: None for n in self.net.state.nodes if n.name != node}
        body.update({self.node(dst).pubkey_ed25519: proxies[name].listen for name, dst in mine})
        self.net.node_admin(node, "peer_overrides", body, method="PUT")

    # -- link proxies ------------------------------------------------------------------------
    def link_name(self, src: str, dst: str) -> str:
        return f"{self.proxy_of(src)}->{self.proxy_of(dst)}"

    def link_index(self) -> dict[str, tuple[str, str]]:
        """Link proxies of this testnet now present in Toxiproxy: name -> (src, dst)."""
        by_proxy = {n.proxy: n.name for n in self.net.state.nodes if n.proxy}
        out = {}
        for name in self.toxiproxy.proxies():
            a, sep, b = name.partition("->")
            if sep and a in by_proxy and b in by_proxy:
                out[name] = (by_proxy[a], by_proxy[b])
        return out

    def enable_if_present(self, proxy: str) -> None:
        try:
            self.toxiproxy.enable(proxy)
        except ToxiproxyNotFound:
            pass

    def pair_routed(self, src: str, dst: str) -> bool:
        """Whether ``src`` reaches ``dst`` through a pair link (both real servers)."""
        return all(nodekinds.kind_class(self.node(n).kind).routes_pairs for n in (src, dst))

    def link_proxies(self, src: str, dst: str) -> list[str]:
        """Every proxy of the link src->dst: the link proxy, and for a pair link its OxenMQ
        companion."""
        name = self.link_name(src, dst)
        return [name, link_omq_name(name)] if self.pair_routed(src, dst) else [name]

    def link_toxic_targets(self, src: str, dst: str, stream: str) -> list[tuple[str, str]]:
        """Where a toxic on ``stream`` of the link src->dst goes: ``(proxy, stream)`` pairs.

        For a pair link also on the OxenMQ proxy of the reverse pair with the other stream:
        OxenMQ sends ``src``'s requests to ``dst`` over any connection between the two, also one
        that ``dst`` opened (through ``dst->src``), so the same bytes are delayed whichever side
        connected."""
        out = [(p, stream) for p in self.link_proxies(src, dst)]
        if self.pair_routed(src, dst):
            other = "upstream" if stream == "downstream" else "downstream"
            out.append((link_omq_name(self.link_name(dst, src)), other))
        return out

    def _pair_link(self, src: str, dst: str, enabled: bool | None) -> str:
        name = self.link_name(src, dst)
        tp = self.toxiproxy
        for proxy in self.link_proxies(src, dst):
            found = tp.find_proxy(proxy)
            if found is None:
                raise FaultError(
                    f"link proxy {proxy!r} between the real servers {src} and {dst} is missing "
                    f"from Toxiproxy {self.net.state.toxiproxy_url}: it is made at 'testnet up' "
                    "(process backend); recreate the testnet ('testnet down', 'testnet up')")
            if enabled is not None and found.enabled != enabled:
                tp.update_proxy(proxy, enabled=enabled)
        return name

    def _reset_pair_link(self, name: str) -> None:
        """A pair link back to its resting state: enabled, no toxics (it is never deleted)."""
        tp = self.toxiproxy
        for proxy in (name, link_omq_name(name)):
            found = tp.find_proxy(proxy)
            if found is None:
                continue
            for t in found.toxics:
                tp.remove_toxic(proxy, t.name, missing_ok=True)
            if not found.enabled:
                tp.enable(proxy)

    def ensure_link(self, fault: Fault, src: str, dst: str, *, enabled: bool | None) -> str:
        """Make the link proxy src->dst exist (``enabled`` None keeps an existing one's state)
        and point ``src`` at it; returns its name. A pair link exists already: only its state
        (and its OxenMQ companion's) changes."""
        if self.pair_routed(src, dst):
            return self._pair_link(src, dst, enabled)
        name = self.link_name(src, dst)
        tp = self.toxiproxy
        proxy = tp.find_proxy(name)
        if proxy is None:
            listen = self._link_listen(src, dst)
            proxy = tp.create_proxy(name, listen=listen, upstream=self._upstream(dst),
                                    enabled=True if enabled is None else enabled)
            fault.created_links.append(name)
            listen_addr = listen
        else:
            listen_addr = proxy.listen
            if enabled is not None and proxy.enabled != enabled:
                tp.update_proxy(name, enabled=enabled)
        self._set_override(src, dst, listen_addr)
        return name

    def drop_idle_links(self, names: set[str]) -> list[str]:
        """Delete link proxies among ``names`` that carry no toxic and are enabled (a disabled
        one belongs to a partition), with their peer overrides."""
        index = self.link_index()
        proxies = self.toxiproxy.proxies()
        drop = []
        for name in sorted(names):
            p = proxies.get(name)
            if p is None or name not in index or self.pair_routed(*index[name]):
                continue  # pair links stay (their toxics are removed by the fault's undo)
            if not p.toxics and p.enabled:
                drop.append(name)
        return self.delete_links({n: index[n] for n in drop})

    def release_cut_links(self, names: set[str]) -> list[str]:
        """End a partition on link proxies ``names``: delete those without toxics (and their
        peer overrides), re-enable those that still carry link toxics."""
        index = self.link_index()
        proxies = self.toxiproxy.proxies()
        drop = {}
        for name in sorted(names):
            p = proxies.get(name)
            if p is None or name not in index:
                continue
            if self.pair_routed(*index[name]):
                for proxy in (name, link_omq_name(name)):
                    self.enable_if_present(proxy)
                continue
            if p.toxics:
                if not p.enabled:
                    self.toxiproxy.enable(name)
            else:
                drop[name] = index[name]
        return self.delete_links(drop)

    def delete_links(self, links: dict[str, tuple[str, str]]) -> list[str]:
        """Remove peer overrides, then the link proxies; returns override errors (a stopped node
        has no overrides to remove)."""
        errors = []
        by_src: dict[str, dict[str, None]] = {}
        for name, (src, dst) in sorted(links.items()):
            if self.pair_routed(src, dst):
                self._reset_pair_link(name)
                continue
            by_src.setdefault(src, {})[self.node(dst).pubkey_ed25519] = None
        # a stopped node has no overrides left (they live in its memory); a paused one is
        # reset when Faults unpauses it (restore_overrides)
        results = self.admin_many({src: ("peer_overrides", body, "PUT")
                                   for src, body in by_src.items() if self.reachable(src)})
        for src, res in results.items():
            if isinstance(res, Exception):
                errors.append(f"{src}: removing peer overrides failed: {res}")
        for name in sorted(links):
            if not self.pair_routed(*links[name]):
                self.toxiproxy.delete_proxy(name, missing_ok=True)
        return errors

    def _upstream(self, dst: str) -> str:
        """Where a link proxy to ``dst`` forwards: ``dst``'s own proxy, so node-level faults
        (down, latency on ``dst``) keep applying to traffic that takes a link proxy."""
        rec = self.node(dst)
        return f"{rec.public_ip}:{rec.storage_port}"

    def _link_listen(self, src: str, dst: str) -> str:
        backend = self.net.backend
        if not hasattr(backend, "link_address"):
            raise FaultError(f"the {backend.kind} backend cannot place link proxies "
                             "(no link_address); single-link faults and partitions need it")
        addr = backend.link_address(self.net.state, src=src, dst=dst)
        ip, sep, port = addr.rpartition(":")
        if not sep or not port.isdigit():
            ip, port = addr, str(self.node(dst).storage_port)
        backend.ensure_address(self.net.state, ip)
        return f"{ip}:{port}"

    def _set_override(self, src: str, dst: str, addr: str) -> None:
        if not self.reachable(src):
            # a stopped or paused node: start/unpause through Faults restores its overrides
            # from the link proxies (see restore_overrides)
            return
        body = {self.node(dst).pubkey_ed25519: addr}
        try:
            self.net.node_admin(src, "peer_overrides", body, method="PUT")
        except rpc.RpcError as e:
            hint = (" (the node has no peer_overrides admin endpoint: single-link faults need "
                    "it)" if e.status in (404, 405) else "")
            raise FaultError(f"cannot point {src} at its link proxy to {dst}: {e}{hint}") from e


def raise_errors(errors: list[str]) -> None:
    if errors:
        raise FaultError("; ".join(errors))


__all__ = ["FaultContext", "KindInfo", "KindLookup", "raise_errors"]
