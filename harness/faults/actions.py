"""Fault actions (the "nemesis"): what is done to a running testnet, and how it is undone.

:class:`Faults` applies network faults through the testnet's Toxiproxy (toxics on a node's proxy,
link proxies for single-link faults and partitions), node-side faults through the node admin
interface (clock skew, misbehaviour) and churn through :class:`harness.network.Testnet`. Every
call resolves its target (see :mod:`harness.faults.targets`) at apply time, returns a
:class:`Fault` handle whose :meth:`Fault.remove` undoes it, and records an ``apply`` (and later
a ``remove``) event on the :class:`~harness.faults.timeline.Timeline`.

Everything a fault changes lives in Toxiproxy or in the nodes, never only in this object, so
``clear``/``heal`` work from a fresh process: link proxies are rediscovered by name
(``"<src proxy>-><dst proxy>"``, e.g. ``"sn01->sn02"``).
"""

from __future__ import annotations

import concurrent.futures
import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness import rpc
from harness.backends.base import BackendError
from harness.faults.targets import GuardProvider, NetworkView, Target, TargetError, live_view
from harness.faults.timeline import Event, Timeline
from harness.faults.toxiproxy import STREAMS, ToxiproxyClient, ToxiproxyError, ToxiproxyNotFound
from harness.state import NodeRecord, StateError

if TYPE_CHECKING:
    from harness.network import Testnet

TargetLike = str | Target | Sequence[str]

#: fault action -> Toxiproxy toxic type
TOXICS = {
    "latency": "latency",
    "bandwidth": "bandwidth",
    "timeout": "timeout",
    "reset": "reset_peer",
    "slow_close": "slow_close",
    "slicer": "slicer",
    "limit_data": "limit_data",
}
#: churn action -> the action that undoes it (None: cannot be undone by a timed schedule step)
CHURN = {
    "kill": "start", "stop": "start", "pause": "unpause", "decommission": "recommission",
    "start": None, "unpause": None, "restart": None, "recommission": None,
}
#: actions that take a node out of service; a schedule never stacks two of them on one node
EXCLUSIVE = frozenset({"kill", "stop", "pause", "decommission", "down"})
#: every action :meth:`Faults.apply` understands
ACTIONS = tuple(TOXICS) + ("down", "up", "partition", "skew_clock", "misbehave") + tuple(CHURN) + (
    "add_nodes",)
#: actions whose effect :meth:`Fault.remove` can undo (so a schedule step may have a duration)
REVERSIBLE = frozenset(TOXICS) | {"down", "partition", "skew_clock", "misbehave"} | {
    a for a, undo in CHURN.items() if undo}
BEHAVIOURS = ("drop_stores", "drop_relays", "corrupt_relays", "delay_ms")
DEFAULT_BEHAVIOURS: dict[str, Any] = {"drop_stores": False, "drop_relays": False,
                                      "corrupt_relays": False, "delay_ms": 0}


class FaultError(BackendError):
    """Applying or removing a fault failed; the message names the action, the nodes and the
    cause (Toxiproxy, node admin or runtime error)."""


@dataclass(eq=False)
class Fault:
    """A handle on one applied fault. ``remove()`` undoes it (once). Handles compare by
    identity."""

    action: str
    target: str | None
    params: dict[str, Any]
    nodes: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    step: int | None = None
    #: what to undo: toxics [(proxy, toxic name)], disabled proxies, partition links, churn
    #: nodes, previous clock offsets / behaviours
    toxics: list[tuple[str, str]] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    created_links: list[str] = field(default_factory=list)
    previous: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    event: Event | None = None
    removed: bool = False
    owner: Faults | None = field(default=None, repr=False, compare=False)

    @property
    def reversible(self) -> bool:
        return self.action in REVERSIBLE

    def link_names(self) -> list[str]:
        return [f"{s}->{d}" for s, d in self.links]

    def remove(self) -> Event | None:
        if self.owner is None:
            raise FaultError(f"fault {self.action} has no owner to remove it")
        return self.owner.remove(self)


def action_parameters(action: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters :meth:`Faults.apply` accepts for ``action`` (its method's
    parameters other than the target and the internal ones)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown fault action {action!r}; known: {', '.join(ACTIONS)}")
    sig = inspect.signature(getattr(Faults, action))
    skip = {"self", "node", "side_a", "side_b", "rng", "step", "tag", "exclude"}
    return {n: p for n, p in sig.parameters.items() if n not in skip
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_params(action: str, params: dict[str, Any]) -> None:
    """Raise ValueError if ``params`` do not fit ``action`` (unknown or missing parameters)."""
    accepted = action_parameters(action)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"action {action!r} has no parameter(s) {', '.join(unknown)}; "
                         f"accepted: {', '.join(accepted) or 'none'}")
    missing = [n for n, p in accepted.items() if p.default is inspect.Parameter.empty
               and n not in params]
    if missing:
        raise ValueError(f"action {action!r} needs parameter(s) {', '.join(missing)}")


class Faults:
    """Fault injection on one testnet.

    ``seed`` (default: the testnet's seed) seeds the RNG of random targets: call ``i`` (counted
    from ``first_call``) draws from ``random.Random(f"{seed}/faults/{i}")``; schedule steps pass
    their own RNG.
    ``guard_provider`` resolves the ``guard`` target (the client registers it).
    """

    def __init__(self, net: Testnet, timeline: Timeline | None = None, seed: str | None = None,
                 *, guard_provider: GuardProvider | None = None,
                 toxiproxy: ToxiproxyClient | None = None,
                 view: Callable[[], NetworkView] | None = None,
                 first_call: int = 0) -> None:
        self.net = net
        self.timeline = timeline if timeline is not None else Timeline()
        self.seed = seed if seed is not None else str(net.state.topology.get("seed", "0"))
        self.guard_provider = guard_provider
        self._toxiproxy = toxiproxy
        self._view = view
        self.active: list[Fault] = []
        self._calls = first_call

    # -- plumbing ----------------------------------------------------------------------------
    def __enter__(self) -> Faults:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.remove_all()
        except FaultError:
            if exc_type is None:
                raise
            # an exception is already on its way: do not hide it (the failures are on the
            # timeline)

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

    def next_rng(self) -> random.Random:
        rng = random.Random(f"{self.seed}/faults/{self._calls}")
        self._calls += 1
        return rng

    def view(self, live_swarms: bool = False) -> NetworkView:
        if live_swarms:
            return self._view() if self._view else live_view(self.net.state)
        return NetworkView.from_state(self.net.state)

    def resolve(self, target: TargetLike, rng: random.Random | None = None,
                exclude: Sequence[str] = ()) -> list[str]:
        """The node names ``target`` selects now (see :meth:`Target.resolve`)."""
        t = Target.parse(target)
        if rng is None and t.is_random:
            rng = self.next_rng()
        try:
            view = self.view(live_swarms=t.needs_swarms)
        except rpc.RpcError as e:
            raise TargetError(f"target {t}: cannot read the swarms from the seed: {e}") from None
        return t.resolve(view, rng, guard_provider=self.guard_provider, exclude=exclude)

    def _node(self, name: str) -> NodeRecord:
        return self.net.state.node(name)

    def _proxy_of(self, name: str) -> str:
        rec = self._node(name)
        if not rec.proxy:
            raise FaultError(
                f"node {name} of testnet {self.net.name!r} has no Toxiproxy proxy: network "
                "faults need the proxy layout (Topology.proxies=True, the default)")
        return rec.proxy

    def link_name(self, src: str, dst: str) -> str:
        return f"{self._proxy_of(src)}->{self._proxy_of(dst)}"

    def _link_index(self) -> dict[str, tuple[str, str]]:
        """Link proxies of this testnet now present in Toxiproxy: name -> (src, dst)."""
        by_proxy = {n.proxy: n.name for n in self.net.state.nodes if n.proxy}
        out = {}
        for name in self.toxiproxy.proxies():
            a, sep, b = name.partition("->")
            if sep and a in by_proxy and b in by_proxy:
                out[name] = (by_proxy[a], by_proxy[b])
        return out

    def _record(self, fault: Fault, phase: str, error: str | None = None,
                result: Any = None) -> Event:
        ev = Event(action=fault.action, phase=phase, nodes=list(fault.nodes), target=fault.target,
                   params=dict(fault.params), links=fault.link_names(), result=result,
                   error=error, step=fault.step)
        return self.timeline.record(ev)

    def _run(self, action: str, target: TargetLike | None, params: dict[str, Any],
             body: Callable[[Fault], None], *, step: int | None = None) -> Fault:
        fault = Fault(action=action, target=None if target is None else str(Target.parse(target)),
                      params=params, step=step, owner=self)
        try:
            body(fault)
        except Exception as e:
            rollback_error = self._undo(fault, quiet=True) if fault.reversible else None
            msg = self._message(fault, "apply", e)
            if rollback_error:
                msg += f" (rolling back the partial fault also failed: {rollback_error})"
            fault.event = self._record(fault, "apply", error=msg)
            if isinstance(e, (TargetError, ValueError)):
                raise
            raise FaultError(msg) from e
        fault.event = self._record(fault, "apply", result=fault.result)
        if fault.reversible:
            self.active.append(fault)
        return fault

    def _message(self, fault: Fault, phase: str, e: BaseException) -> str:
        what = ", ".join(fault.link_names()) or ", ".join(fault.nodes) or (fault.target or "-")
        return f"{phase} {fault.action} on {what}: {e}"

    # -- removal -----------------------------------------------------------------------------
    def remove(self, fault: Fault, *, step: int | None = None) -> Event | None:
        """Undo ``fault``; returns the ``remove`` event (None if it was already removed)."""
        if fault.removed:
            return None
        if not fault.reversible:
            raise FaultError(f"{fault.action} cannot be undone (it is not a lasting fault)")
        if step is not None:
            fault.step = step
        error = self._undo(fault, quiet=False)
        fault.removed = True
        if fault in self.active:
            self.active.remove(fault)
        ev = self._record(fault, "remove", error=error)
        if error:
            raise FaultError(error)
        return ev

    def remove_all(self) -> list[Event]:
        """Undo every fault this object applied and has not removed yet (newest first)."""
        events = []
        errors = []
        for fault in reversed(list(self.active)):
            try:
                ev = self.remove(fault)
            except FaultError as e:
                errors.append(str(e))
                continue
            if ev:
                events.append(ev)
        if errors:
            raise FaultError("; ".join(errors))
        return events

    def _undo(self, fault: Fault, quiet: bool) -> str | None:
        """Undo what ``fault`` did; returns an error message (None when everything worked)."""
        errors: list[str] = []

        def attempt(what: str, fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception as e:  # keep undoing the rest; report every failure
                errors.append(f"{what}: {e}")

        tp = self.toxiproxy if (fault.toxics or fault.disabled or fault.created_links) else None
        if tp is not None:
            for proxy, toxic in fault.toxics:
                attempt(f"remove toxic {toxic} of {proxy}",
                        lambda p=proxy, t=toxic: tp.remove_toxic(p, t, missing_ok=True))
            for proxy in fault.disabled:
                attempt(f"enable {proxy}", lambda p=proxy: self._enable_if_present(p))
            links = set(fault.created_links) | {self.link_name(s, d) for s, d in fault.links}
            if links and fault.action == "partition":
                attempt("remove partition links",
                        lambda: _raise_errors(self._release_cut_links(links)))
            elif links:
                attempt("remove link proxies", lambda: _raise_errors(self._drop_idle_links(links)))
        if fault.action in CHURN and CHURN[fault.action]:
            undo = CHURN[fault.action]
            for n in fault.nodes:
                attempt(f"{undo} {n}", lambda n=n, u=undo: self._churn_call(u, n))
        if fault.action == "skew_clock":
            for n, prev in fault.previous.items():
                attempt(f"restore clock of {n}",
                        lambda n=n, p=prev: self.net.node_admin(n, "clock", {"offset_ms": p},
                                                                method="PUT"))
        if fault.action == "misbehave":
            for n, prev in fault.previous.items():
                attempt(f"restore behaviours of {n}",
                        lambda n=n, p=prev: self.net.node_admin(n, "behaviours", p, method="PUT"))
        if not errors:
            return None
        msg = self._message(fault, "remove", RuntimeError("; ".join(errors)))
        return msg if not quiet else "; ".join(errors)

    def _enable_if_present(self, proxy: str) -> None:
        try:
            self.toxiproxy.enable(proxy)
        except ToxiproxyNotFound:
            pass

    def _drop_idle_links(self, names: set[str]) -> list[str]:
        """Delete link proxies among ``names`` that carry no toxic and are enabled (a disabled
        one belongs to a partition), with their peer overrides."""
        index = self._link_index()
        proxies = self.toxiproxy.proxies()
        drop = []
        for name in sorted(names):
            p = proxies.get(name)
            if p is None or name not in index:
                continue
            if not p.toxics and p.enabled:
                drop.append(name)
        return self._delete_links({n: index[n] for n in drop})

    def _release_cut_links(self, names: set[str]) -> list[str]:
        """End a partition on link proxies ``names``: delete those without toxics (and their
        peer overrides), re-enable those that still carry link toxics."""
        index = self._link_index()
        proxies = self.toxiproxy.proxies()
        drop = {}
        for name in sorted(names):
            p = proxies.get(name)
            if p is None or name not in index:
                continue
            if p.toxics:
                if not p.enabled:
                    self.toxiproxy.enable(name)
            else:
                drop[name] = index[name]
        return self._delete_links(drop)

    def _delete_links(self, links: dict[str, tuple[str, str]]) -> list[str]:
        """Remove peer overrides, then the link proxies; returns override errors (a stopped node
        has no overrides to remove)."""
        errors = []
        by_src: dict[str, dict[str, None]] = {}
        for _name, (src, dst) in sorted(links.items()):
            by_src.setdefault(src, {})[self._node(dst).pubkey_ed25519] = None
        # a stopped node has no overrides left (they live in its memory); a paused one is
        # reset when Faults unpauses it (_restore_overrides)
        results = self._admin_many({src: ("peer_overrides", body, "PUT")
                                    for src, body in by_src.items() if self._reachable(src)})
        for src, res in results.items():
            if isinstance(res, Exception):
                errors.append(f"{src}: removing peer overrides failed: {res}")
        for name in sorted(links):
            self.toxiproxy.delete_proxy(name, missing_ok=True)
        return errors

    # -- helpers for links -------------------------------------------------------------------
    def _upstream(self, dst: str) -> str:
        """Where a link proxy to ``dst`` forwards: ``dst``'s own proxy, so node-level faults
        (down, latency on ``dst``) keep applying to traffic that takes a link proxy."""
        rec = self._node(dst)
        return f"{rec.public_ip}:{rec.storage_port}"

    def _link_listen(self, src: str, dst: str) -> str:
        backend = self.net.backend
        if not hasattr(backend, "link_address"):
            raise FaultError(f"the {backend.kind} backend cannot place link proxies "
                             "(no link_address); single-link faults and partitions need it")
        addr = backend.link_address(self.net.state, src=src, dst=dst)
        ip, sep, port = addr.rpartition(":")
        if not sep or not port.isdigit():
            ip, port = addr, str(self._node(dst).storage_port)
        backend.ensure_address(self.net.state, ip)
        return f"{ip}:{port}"

    def _ensure_link(self, fault: Fault, src: str, dst: str, *, enabled: bool | None) -> str:
        """Make the link proxy src->dst exist (``enabled`` None keeps an existing one's state)
        and point ``src`` at it; returns its name."""
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

    def _reachable(self, node: str) -> bool:
        """Whether ``node``'s admin interface can answer (running and not paused)."""
        return (self.net.backend.is_running(self.net.state, node)
                and not self._node(node).runtime.get("paused"))

    def _set_override(self, src: str, dst: str, addr: str) -> None:
        if not self._reachable(src):
            # a stopped or paused node: start/unpause through Faults restores its overrides
            # from the link proxies (see _restore_overrides)
            return
        body = {self._node(dst).pubkey_ed25519: addr}
        try:
            self.net.node_admin(src, "peer_overrides", body, method="PUT")
        except rpc.RpcError as e:
            hint = (" (the node has no peer_overrides admin endpoint: single-link faults need "
                    "it)" if e.status in (404, 405) else "")
            raise FaultError(f"cannot point {src} at its link proxy to {dst}: {e}{hint}") from e

    def _pairs(self, node: TargetLike, link: TargetLike, rng: random.Random,
               exclude: Sequence[str]) -> list[tuple[str, str]]:
        srcs = self.resolve(node, rng, exclude)
        dsts = self.resolve(link, rng, exclude)
        pairs = [(s, d) for s in srcs for d in dsts if s != d]
        if not pairs:
            raise TargetError(f"link fault {node} -> {link}: no pair of distinct nodes "
                              f"(sources {srcs}, destinations {dsts})")
        return pairs

    # -- admin helpers -----------------------------------------------------------------------
    def _admin_many(self, calls: dict[str, tuple[str, Any, str]]) -> dict[str, Any]:
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

    def _churn_call(self, action: str, node: str) -> None:
        getattr(self.net, action)(node)
        if action in ("start", "restart", "unpause"):
            self._restore_overrides(node, full=action == "unpause")

    def _restore_overrides(self, node: str, *, full: bool = False, timeout: float = 30.0) -> None:
        """Point ``node`` at exactly the link proxies that exist for it: a restarted node forgot
        its overrides; an unpaused one (``full``) may also keep overrides of links removed while
        it was frozen, so every other peer's override is reset first."""
        if not self.net.state.toxiproxy_url:
            return
        proxies = self.toxiproxy.proxies()
        mine = [(name, dst) for name, (src, dst) in self._link_index().items() if src == node]
        if not mine and not full:
            return

        def answering() -> bool:
            return not isinstance(self._admin_many({node: ("state", None, "GET")})[node],
                                  Exception)

        self.net.wait_for(answering, timeout=timeout, what=f"admin interface of {node}")
        body: dict[str, str | None] = {}
        if full:
            body = {n.pubkey_ed25519: None for n in self.net.state.nodes if n.name != node}
        body.update({self._node(dst).pubkey_ed25519: proxies[name].listen for name, dst in mine})
        self.net.node_admin(node, "peer_overrides", body, method="PUT")

    # -- network faults ----------------------------------------------------------------------
    def _toxic(self, action: str, node: TargetLike, attributes: dict[str, Any],
               link: TargetLike | None, stream: str, params: dict[str, Any],
               rng: random.Random | None, step: int | None, tag: str | None,
               exclude: Sequence[str]) -> Fault:
        if stream not in (*STREAMS, "both"):
            raise ValueError(f"stream must be 'upstream', 'downstream' or 'both', got {stream!r}")
        streams = list(STREAMS) if stream == "both" else [stream]
        toxic_type = TOXICS[action]
        if link is not None:
            params = {**params, "link": str(Target.parse(link))}

        def body(f: Fault) -> None:
            r = rng or self.next_rng()
            if link is None:
                f.nodes = self.resolve(node, r, exclude)
                proxies = [self._proxy_of(n) for n in f.nodes]
            else:
                f.links = self._pairs(node, link, r, exclude)
                f.nodes = sorted({s for s, _ in f.links})
                proxies = [self._ensure_link(f, s, d, enabled=None) for s, d in f.links]
            tp = self.toxiproxy
            for proxy in proxies:
                for st in streams:
                    tname = f"{toxic_type}_{st}" + (f"_{tag}" if tag else "")
                    # set semantics: applying the same fault again replaces it
                    tp.remove_toxic(proxy, tname, missing_ok=True)
                    tp.add_toxic(proxy, toxic_type, attributes, stream=st, name=tname)
                    f.toxics.append((proxy, tname))

        return self._run(action, node, params, body, step=step)

    def latency(self, node: TargetLike, ms: int, jitter: int = 0, link: TargetLike | None = None,
                stream: str = "downstream", *, rng: random.Random | None = None,
                step: int | None = None, tag: str | None = None,
                exclude: Sequence[str] = ()) -> Fault:
        """Delay data to ``node`` (or only ``node``'s traffic to ``link``) by ``ms`` ± ``jitter``."""
        _non_negative(ms=ms, jitter=jitter)
        return self._toxic("latency", node, {"latency": int(ms), "jitter": int(jitter)}, link,
                           stream, {"ms": ms, "jitter": jitter, "stream": stream}, rng, step,
                           tag, exclude)

    def bandwidth(self, node: TargetLike, kbps: int, link: TargetLike | None = None,
                  stream: str = "downstream", *, rng: random.Random | None = None,
                  step: int | None = None, tag: str | None = None,
                  exclude: Sequence[str] = ()) -> Fault:
        """Limit throughput to ``kbps`` kilobytes per second (Toxiproxy's ``rate``, KB/s)."""
        _non_negative(kbps=kbps)
        return self._toxic("bandwidth", node, {"rate": int(kbps)}, link, stream,
                           {"kbps": kbps, "stream": stream}, rng, step, tag, exclude)

    def timeout(self, node: TargetLike, ms: int, link: TargetLike | None = None,
                stream: str = "downstream", *, rng: random.Random | None = None,
                step: int | None = None, tag: str | None = None,
                exclude: Sequence[str] = ()) -> Fault:
        """Swallow all data and close the connection after ``ms`` (0: keep it open, silent)."""
        _non_negative(ms=ms)
        return self._toxic("timeout", node, {"timeout": int(ms)}, link, stream,
                           {"ms": ms, "stream": stream}, rng, step, tag, exclude)

    def reset(self, node: TargetLike, timeout_ms: int = 0, link: TargetLike | None = None,
              stream: str = "downstream", *, rng: random.Random | None = None,
              step: int | None = None, tag: str | None = None,
              exclude: Sequence[str] = ()) -> Fault:
        """Reset connections (TCP RST) ``timeout_ms`` after their first data."""
        _non_negative(timeout_ms=timeout_ms)
        return self._toxic("reset", node, {"timeout": int(timeout_ms)}, link, stream,
                           {"timeout_ms": timeout_ms, "stream": stream}, rng, step, tag, exclude)

    def slow_close(self, node: TargetLike, delay_ms: int, link: TargetLike | None = None,
                   stream: str = "downstream", *, rng: random.Random | None = None,
                   step: int | None = None, tag: str | None = None,
                   exclude: Sequence[str] = ()) -> Fault:
        """Delay the close of connections by ``delay_ms``."""
        _non_negative(delay_ms=delay_ms)
        return self._toxic("slow_close", node, {"delay": int(delay_ms)}, link, stream,
                           {"delay_ms": delay_ms, "stream": stream}, rng, step, tag, exclude)

    def slicer(self, node: TargetLike, average_size: int, size_variation: int = 0,
               delay_us: int = 0, link: TargetLike | None = None, stream: str = "downstream",
               *, rng: random.Random | None = None, step: int | None = None,
               tag: str | None = None, exclude: Sequence[str] = ()) -> Fault:
        """Cut data into pieces of ``average_size`` ± ``size_variation`` bytes, ``delay_us``
        microseconds apart."""
        _non_negative(average_size=average_size, size_variation=size_variation, delay_us=delay_us)
        if average_size < 1:
            raise ValueError("average_size must be >= 1 byte")
        return self._toxic("slicer", node, {"average_size": int(average_size),
                                            "size_variation": int(size_variation),
                                            "delay": int(delay_us)}, link, stream,
                           {"average_size": average_size, "size_variation": size_variation,
                            "delay_us": delay_us, "stream": stream}, rng, step, tag, exclude)

    def limit_data(self, node: TargetLike, nbytes: int, link: TargetLike | None = None,
                   stream: str = "downstream", *, rng: random.Random | None = None,
                   step: int | None = None, tag: str | None = None,
                   exclude: Sequence[str] = ()) -> Fault:
        """Close each connection after ``nbytes`` bytes."""
        _non_negative(nbytes=nbytes)
        return self._toxic("limit_data", node, {"bytes": int(nbytes)}, link, stream,
                           {"nbytes": nbytes, "stream": stream}, rng, step, tag, exclude)

    def down(self, node: TargetLike, *, rng: random.Random | None = None,
             step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        """Make ``node`` unreachable: its proxy stops listening and drops every connection (the
        node process keeps running and keeps talking to others)."""
        def body(f: Fault) -> None:
            f.nodes = self.resolve(node, rng or self.next_rng(), exclude)
            for n in f.nodes:
                proxy = self._proxy_of(n)
                self.toxiproxy.disable(proxy)
                f.disabled.append(proxy)

        return self._run("down", node, {}, body, step=step)

    def up(self, node: TargetLike, *, rng: random.Random | None = None,
           step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        """Undo :meth:`down`: the node's proxy listens again."""
        def body(f: Fault) -> None:
            f.nodes = self.resolve(node, rng or self.next_rng(), exclude)
            for n in f.nodes:
                self.toxiproxy.enable(self._proxy_of(n))
            for other in self.active:
                if other.action == "down":
                    other.disabled = [p for p in other.disabled
                                      if p not in {self._proxy_of(n) for n in f.nodes}]

        return self._run("up", node, {}, body, step=step)

    def partition(self, side_a: TargetLike, side_b: TargetLike | None = None, *,
                  rng: random.Random | None = None, step: int | None = None,
                  exclude: Sequence[str] = ()) -> Fault:
        """Cut node↔node traffic between ``side_a`` and ``side_b`` (default: every other node)
        in both directions; clients still reach every node."""
        params = {"from": None if side_b is None else str(Target.parse(side_b))}

        def body(f: Fault) -> None:
            r = rng or self.next_rng()
            a = self.resolve(side_a, r, exclude)
            if side_b is None:
                b = [n for n in self.view().names if n not in a]
            else:
                b = self.resolve(side_b, r, exclude)
            overlap = sorted(set(a) & set(b))
            if overlap:
                raise TargetError(f"partition: {', '.join(overlap)} on both sides")
            if not a or not b:
                raise TargetError(f"partition needs nodes on both sides (got {a} and {b})")
            f.nodes = sorted(set(a) | set(b))
            f.result = {"side_a": a, "side_b": b}
            for x, y in [(x, y) for x in a for y in b] + [(y, x) for x in a for y in b]:
                f.links.append((x, y))
                self._ensure_link(f, x, y, enabled=False)

        return self._run("partition", side_a, params, body, step=step)

    def heal(self, *, step: int | None = None) -> Event:
        """End every partition: disabled link proxies are removed (or re-enabled when they still
        carry link toxics) with their peer overrides. Works from a fresh process."""
        fault = Fault(action="heal", target=None, params={}, step=step, owner=self)
        try:
            index = self._link_index()
            proxies = self.toxiproxy.proxies()
            cut = {n: index[n] for n in sorted(index) if not proxies[n].enabled}
            fault.links = sorted(cut.values())
            fault.nodes = sorted({x for pair in fault.links for x in pair})
            errors = self._release_cut_links(set(cut))
        except Exception as e:
            msg = self._message(fault, "apply", e)
            self._record(fault, "apply", error=msg)
            raise FaultError(msg) from e
        for f in self.active:
            if f.action == "partition":
                f.removed = True
        self.active = [f for f in self.active if f.action != "partition"]
        return self._record(fault, "apply", result={"errors": errors} if errors else None)

    def clear(self, node: TargetLike | None = None, *, node_side: bool = True,
              step: int | None = None) -> Event:
        """Remove every network fault touching ``node`` (default: all nodes): toxics of its
        proxy, link proxies from or to it (with peer overrides), and re-enable its proxy. With
        ``node_side`` also reset its clock offset and misbehaviours (nodes that do not answer are
        listed in the event's result, not raised). Works from a fresh process."""
        fault = Fault(action="clear", target=None if node is None else str(Target.parse(node)),
                      params={"node_side": node_side}, step=step, owner=self)
        result: dict[str, Any] = {}
        try:
            names = self.resolve(node, self.next_rng()) if node is not None else self.view().names
            fault.nodes = names
            chosen = set(names)
            tp = self.toxiproxy
            for n in names:
                proxy = self._proxy_of(n)
                for t in tp.toxics(proxy):
                    tp.remove_toxic(proxy, t.name, missing_ok=True)
                tp.enable(proxy)
            links = {k: v for k, v in self._link_index().items() if chosen & set(v)}
            fault.links = sorted(links.values())
            errors = self._delete_links(links)
            if node_side:
                errors += self._reset_node_side(names)
            if errors:
                result["errors"] = errors
        except Exception as e:
            msg = self._message(fault, "apply", e)
            self._record(fault, "apply", error=msg)
            raise FaultError(msg) from e
        for f in list(self.active):
            if set(f.nodes) <= chosen and (f.action in TOXICS or f.action in
                                           ("down", "partition", "skew_clock", "misbehave")):
                f.removed = True
                self.active.remove(f)
        return self._record(fault, "apply", result=result or None)

    def _reset_node_side(self, names: list[str]) -> list[str]:
        running = [n for n in names if self._reachable(n)]
        calls_clock = {n: ("clock", {"offset_ms": 0}, "PUT") for n in running}
        calls_beh = {n: ("behaviours", dict(DEFAULT_BEHAVIOURS), "PUT") for n in running}
        errors = []
        for what, calls in (("clock", calls_clock), ("behaviours", calls_beh)):
            for n, res in self._admin_many(calls).items():
                if isinstance(res, Exception):
                    errors.append(f"{n}: resetting {what} failed: {res}")
        return errors

    # -- node-side faults --------------------------------------------------------------------
    def skew_clock(self, node: TargetLike, offset_ms: int, *, rng: random.Random | None = None,
                   step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        """Shift ``node``'s clock by ``offset_ms`` (removal restores the previous offset)."""
        if isinstance(offset_ms, bool) or not isinstance(offset_ms, int):
            raise ValueError(f"offset_ms must be an integer, got {offset_ms!r}")

        def body(f: Fault) -> None:
            f.nodes = self.resolve(node, rng or self.next_rng(), exclude)
            for n in f.nodes:
                prev = self.net.node_admin(n, "clock")
                f.previous[n] = int((prev or {}).get("offset_ms", 0))
                self.net.node_admin(n, "clock", {"offset_ms": offset_ms}, method="PUT")

        return self._run("skew_clock", node, {"offset_ms": offset_ms}, body, step=step)

    def misbehave(self, node: TargetLike, *, rng: random.Random | None = None,
                  step: int | None = None, exclude: Sequence[str] = (),
                  **behaviours: Any) -> Fault:
        """Switch node behaviours (``drop_stores``, ``drop_relays``, ``corrupt_relays``,
        ``delay_ms``); removal restores their previous values."""
        unknown = sorted(set(behaviours) - set(BEHAVIOURS))
        if unknown or not behaviours:
            raise ValueError(f"misbehave needs behaviours among {', '.join(BEHAVIOURS)}"
                             + (f"; unknown: {', '.join(unknown)}" if unknown else ""))

        def body(f: Fault) -> None:
            f.nodes = self.resolve(node, rng or self.next_rng(), exclude)
            for n in f.nodes:
                prev = self.net.node_admin(n, "behaviours") or {}
                f.previous[n] = {k: prev.get(k, DEFAULT_BEHAVIOURS[k]) for k in behaviours}
                self.net.node_admin(n, "behaviours", dict(behaviours), method="PUT")

        return self._run("misbehave", node, dict(behaviours), body, step=step)

    # -- churn -------------------------------------------------------------------------------
    def _churn(self, action: str, node: TargetLike, rng: random.Random | None,
               step: int | None, exclude: Sequence[str]) -> Fault:
        def body(f: Fault) -> None:
            names = self.resolve(node, rng or self.next_rng(), exclude)
            for n in names:
                self._churn_call(action, n)
                f.nodes.append(n)  # a partial failure undoes only what was done

        return self._run(action, node, {}, body, step=step)

    def kill(self, node: TargetLike, *, rng: random.Random | None = None,
             step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        """SIGKILL (process) / docker kill; removal starts the node again."""
        return self._churn("kill", node, rng, step, exclude)

    def stop(self, node: TargetLike, *, rng: random.Random | None = None,
             step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        """Graceful stop; removal starts the node again."""
        return self._churn("stop", node, rng, step, exclude)

    def start(self, node: TargetLike, *, rng: random.Random | None = None,
              step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        return self._churn("start", node, rng, step, exclude)

    def restart(self, node: TargetLike, *, rng: random.Random | None = None,
                step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        return self._churn("restart", node, rng, step, exclude)

    def pause(self, node: TargetLike, *, rng: random.Random | None = None,
              step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        """Freeze the node (SIGSTOP / docker pause); removal unpauses it."""
        return self._churn("pause", node, rng, step, exclude)

    def unpause(self, node: TargetLike, *, rng: random.Random | None = None,
                step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        return self._churn("unpause", node, rng, step, exclude)

    def decommission(self, node: TargetLike, *, rng: random.Random | None = None,
                     step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        """Decommission at the seed (the node leaves its swarm); removal recommissions it."""
        return self._churn("decommission", node, rng, step, exclude)

    def recommission(self, node: TargetLike, *, rng: random.Random | None = None,
                     step: int | None = None, exclude: Sequence[str] = ()) -> Fault:
        return self._churn("recommission", node, rng, step, exclude)

    def add_nodes(self, count: int = 1, *, timeout: float = 60.0,
                  step: int | None = None) -> Fault:
        """Join ``count`` new nodes and wait until the testnet is ready again."""
        def body(f: Fault) -> None:
            new = self.net.add_nodes(count, timeout=timeout)
            f.nodes = [n.name for n in new]

        return self._run("add_nodes", None, {"count": count}, body, step=step)

    # -- dispatch ----------------------------------------------------------------------------
    def apply(self, action: str, target: TargetLike | None = None, *,
              rng: random.Random | None = None, step: int | None = None,
              tag: str | None = None, exclude: Sequence[str] = (),
              **params: Any) -> Fault | Event:
        """Apply ``action`` by name (what schedule steps do). ``params`` are the action's
        keyword parameters (see :func:`action_parameters`); partition's other side is
        ``from``."""
        if action == "heal":
            return self.heal(step=step)
        if action == "clear":
            return self.clear(target, node_side=params.get("node_side", True), step=step)
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; known: "
                             f"{', '.join(ACTIONS + ('heal', 'clear'))}")
        params = dict(params)
        if action == "partition":
            other = params.pop("from", None)
            check_params(action, params)
            if target is None:
                raise TargetError("partition needs a target (one side)")
            return self.partition(target, other, rng=rng, step=step, exclude=exclude)
        if action == "add_nodes":
            check_params(action, params)
            return self.add_nodes(step=step, **params)
        if target is None:
            raise TargetError(f"{action} needs a target (node names, 'random:N', …)")
        if action == "misbehave":
            return self.misbehave(target, rng=rng, step=step, exclude=exclude, **params)
        check_params(action, params)
        extra: dict[str, Any] = {"tag": tag} if action in TOXICS else {}
        return getattr(self, action)(target, rng=rng, step=step, exclude=exclude, **extra,
                                     **params)

    # -- inspection --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Network faults in force now, read from Toxiproxy: per node proxy its toxics and
        whether it is enabled; link proxies with theirs."""
        proxies = self.toxiproxy.proxies()
        index = self._link_index()
        nodes = {}
        for rec in self.net.state.nodes:
            p = proxies.get(rec.proxy or "")
            if p is not None:
                nodes[rec.name] = {"enabled": p.enabled, "toxics": [t.to_json() for t in p.toxics]}
        links = {f"{s}->{d}": {"enabled": proxies[n].enabled, "listen": proxies[n].listen,
                               "toxics": [t.to_json() for t in proxies[n].toxics]}
                 for n, (s, d) in sorted(index.items())}
        return {"nodes": nodes, "links": links}


def _raise_errors(errors: list[str]) -> None:
    if errors:
        raise FaultError("; ".join(errors))


def _non_negative(**values: Any) -> None:
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{k} must be a non-negative number, got {v!r}")


__all__ = ["Faults", "Fault", "FaultError", "ACTIONS", "REVERSIBLE", "EXCLUSIVE", "TOXICS",
           "CHURN", "BEHAVIOURS", "action_parameters", "check_params", "ToxiproxyError"]
