"""Fault actions (the "nemesis"): :class:`Faults` applies any registered fault kind to a
running testnet and undoes it.

Every fault goes through :meth:`Faults.apply` (by action name) and the kind the registry holds
for that name (:mod:`harness.faults.families`): the parameters are checked by the kind, the
target is parsed once here and passed down as a :class:`Target`, the kind resolves it at apply
time and records what it did in the returned :class:`Fault`, whose :meth:`Fault.remove` undoes
it. Each apply (and later remove) is an event on the :class:`~harness.faults.timeline.Timeline`.
The named methods (``latency``, ``kill``, ``partition``, ``heal``, ``clear``, …) are thin
conveniences over :meth:`Faults.apply`.

Everything a fault changes lives in Toxiproxy or in the nodes, never only in this object, so
``clear``/``heal`` work from a fresh process.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.faults.context import FaultContext
from harness.faults.families.base import FaultKind, Request
from harness.faults.families.registry import DEFAULT_REGISTRY, Registry
from harness.faults.fault import Fault, FaultError
from harness.faults.targets import GuardProvider, NetworkView, Target, TargetError
from harness.faults.timeline import Event, Timeline
from harness.faults.toxiproxy import ToxiproxyClient, ToxiproxyError
from harness.nodekinds.oxen_storage import link_omq_name

if TYPE_CHECKING:
    from harness.network import Testnet

#: what the Python API accepts as a target: a target string, a Target, or a list of names
TargetLike = str | Target | Sequence[str]
#: every action the default registry knows
ACTIONS = DEFAULT_REGISTRY.actions()


class Faults(FaultContext):
    """Fault injection on one testnet, through the registry of fault kinds.

    ``seed`` (default: the testnet's seed) seeds the RNG of random targets: call ``i`` (counted
    from ``first_call``) draws from ``random.Random(f"{seed}/faults/{i}")``; schedule steps pass
    their own RNG. ``guard_provider`` resolves the ``guard`` target (the client registers it).
    ``registry`` holds the fault kinds (default: the built-in families).
    """

    def __init__(self, net: Testnet, timeline: Timeline | None = None, seed: str | None = None,
                 *, guard_provider: GuardProvider | None = None,
                 toxiproxy: ToxiproxyClient | None = None,
                 view: Callable[[], NetworkView] | None = None,
                 first_call: int = 0, registry: Registry = DEFAULT_REGISTRY) -> None:
        super().__init__(net, registry, seed, guard_provider=guard_provider,
                         toxiproxy=toxiproxy, view=view, first_call=first_call)
        self.registry = registry
        self.timeline = timeline if timeline is not None else Timeline()

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

    def resolve(self, target: TargetLike, rng: random.Random | None = None,
                exclude: Sequence[str] = ()) -> list[str]:
        """The node names ``target`` selects now (see :meth:`Target.resolve`)."""
        return self.nodes_of(Target.parse(target), rng, exclude)

    # -- applying ----------------------------------------------------------------------------
    def apply(self, action: str, target: TargetLike | None = None, *,
              rng: random.Random | None = None, step: int | None = None,
              tag: str | None = None, exclude: Sequence[str] = (), **params: Any) -> Fault:
        """Apply ``action`` (a name in the registry) to ``target`` with its keyword
        ``params`` (partition's other side is ``from``). Raises :class:`UnknownAction` /
        :class:`ParamError` (ValueErrors) for a bad action or parameters, :class:`TargetError`
        for an impossible target and :class:`FaultError` when applying fails (rolled back)."""
        kind = self.registry.get(action)
        return self.apply_kind(kind, None if target is None else Target.parse(target),
                               kind.parse(params), rng=rng, step=step, tag=tag,
                               exclude=exclude)

    def apply_kind(self, kind: FaultKind, target: Target | None, params: Mapping[str, Any], *,
                   rng: random.Random | None = None, step: int | None = None,
                   tag: str | None = None, exclude: Sequence[str] = ()) -> Fault:
        """Apply ``kind`` with a parsed target and checked parameters (``kind.parse``): what
        :meth:`apply`, schedule runs and the CLI call once they have parsed their input."""
        if target is None and kind.target == "required":
            raise TargetError(f"{kind.action} needs a target (node names, 'random:N', …)")
        if target is not None and kind.target == "none":
            raise TargetError(f"{kind.action} takes no target (got {target})")
        complete = kind.complete(params)
        if target is not None and rng is None:
            rng = self.next_rng()
        fault = Fault(action=kind.action, target=None if target is None else str(target),
                      params=kind.event_params(complete), step=step,
                      reversible=kind.reversible, owner=self)
        try:
            kind.apply(self, fault, Request(target, complete, rng, tuple(exclude), tag,
                                            kind.capability(complete)))
        except Exception as e:
            rollback_error = self._undo(kind, fault, quiet=True) if kind.reversible else None
            msg = self._message(fault, "apply", e)
            if rollback_error:
                msg += f" (rolling back the partial fault also failed: {rollback_error})"
            fault.event = self._record(fault, "apply", error=msg)
            if isinstance(e, (TargetError, ValueError)):
                raise
            raise FaultError(msg) from e
        fault.event = self._record(fault, "apply", result=fault.result)
        if kind.reversible:
            self.active.append(fault)
        return fault

    def _record(self, fault: Fault, phase: str, error: str | None = None,
                result: Any = None) -> Event:
        ev = Event(action=fault.action, phase=phase, nodes=list(fault.nodes), target=fault.target,
                   params=dict(fault.params), links=fault.link_names(), result=result,
                   error=error, step=fault.step)
        return self.timeline.record(ev)

    @staticmethod
    def _message(fault: Fault, phase: str, e: BaseException) -> str:
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
        error = self._undo(self.registry.get(fault.action), fault, quiet=False)
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

    def _undo(self, kind: FaultKind, fault: Fault, quiet: bool) -> str | None:
        """Undo what ``fault`` did; returns an error message (None when everything worked)."""
        try:
            errors = kind.undo(self, fault)
        except Exception as e:  # an undo that could not even start
            errors = [str(e)]
        if not errors:
            return None
        if quiet:
            return "; ".join(errors)
        return self._message(fault, "remove", RuntimeError("; ".join(errors)))

    # -- inspection --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Network faults in force now, read from Toxiproxy: per node proxy its toxics and
        whether it is enabled; link proxies with theirs. Pair links between real servers (there
        from the start) are listed only while a fault acts on them, with their OxenMQ companion
        as ``omq``."""
        proxies = self.toxiproxy.proxies()
        index = self.link_index()
        nodes = {}
        fs = self.net.state.fileserver
        for rec in self.net.state.nodes + ([fs] if fs is not None else []):
            p = proxies.get(rec.proxy or "")
            if p is not None:
                nodes[rec.name] = {"enabled": p.enabled, "toxics": [t.to_json() for t in p.toxics]}
        links: dict[str, Any] = {}
        for n, (s, d) in sorted(index.items()):
            entry: dict[str, Any] = {"enabled": proxies[n].enabled, "listen": proxies[n].listen,
                                     "toxics": [t.to_json() for t in proxies[n].toxics]}
            if self.pair_routed(s, d):
                omq = proxies.get(link_omq_name(n))
                if omq is not None:
                    entry["omq"] = {"enabled": omq.enabled,
                                    "toxics": [t.to_json() for t in omq.toxics]}
                parts = [entry, *([entry["omq"]] if "omq" in entry else [])]
                if all(x["enabled"] and not x["toxics"] for x in parts):
                    continue  # a pair link at rest is no fault
            links[f"{s}->{d}"] = entry
        return {"nodes": nodes, "links": links}

    # -- conveniences over apply (``opts``: rng, step, tag, exclude) -----------------------
    def latency(self, node: TargetLike, ms: int, jitter: int = 0, link: TargetLike | None = None,
                stream: str = "downstream", **opts: Any) -> Fault:
        """Delay data to ``node`` (or only ``node``'s traffic to ``link``) by ``ms`` ± ``jitter``."""
        return self.apply("latency", node, ms=ms, jitter=jitter, link=link, stream=stream, **opts)

    def bandwidth(self, node: TargetLike, kbps: int, link: TargetLike | None = None,
                  stream: str = "downstream", **opts: Any) -> Fault:
        """Limit throughput to ``kbps`` kilobytes per second (Toxiproxy's ``rate``, KB/s)."""
        return self.apply("bandwidth", node, kbps=kbps, link=link, stream=stream, **opts)

    def timeout(self, node: TargetLike, ms: int, link: TargetLike | None = None,
                stream: str = "downstream", **opts: Any) -> Fault:
        """Swallow all data and close the connection after ``ms`` (0: keep it open, silent)."""
        return self.apply("timeout", node, ms=ms, link=link, stream=stream, **opts)

    def reset(self, node: TargetLike, timeout_ms: int = 0, link: TargetLike | None = None,
              stream: str = "downstream", **opts: Any) -> Fault:
        """Reset connections (TCP RST) ``timeout_ms`` after their first data."""
        return self.apply("reset", node, timeout_ms=timeout_ms, link=link, stream=stream, **opts)

    def slow_close(self, node: TargetLike, delay_ms: int, link: TargetLike | None = None,
                   stream: str = "downstream", **opts: Any) -> Fault:
        """Delay the close of connections by ``delay_ms``."""
        return self.apply("slow_close", node, delay_ms=delay_ms, link=link, stream=stream, **opts)

    def slicer(self, node: TargetLike, average_size: int, size_variation: int = 0,
               delay_us: int = 0, link: TargetLike | None = None, stream: str = "downstream",
               **opts: Any) -> Fault:
        """Cut data into pieces of ``average_size`` ± ``size_variation`` bytes, ``delay_us``
        microseconds apart."""
        return self.apply("slicer", node, average_size=average_size,
                          size_variation=size_variation, delay_us=delay_us, link=link,
                          stream=stream, **opts)

    def limit_data(self, node: TargetLike, nbytes: int, link: TargetLike | None = None,
                   stream: str = "downstream", **opts: Any) -> Fault:
        """Close each connection after ``nbytes`` bytes."""
        return self.apply("limit_data", node, nbytes=nbytes, link=link, stream=stream, **opts)

    def down(self, node: TargetLike, **opts: Any) -> Fault:
        """Make ``node`` unreachable: its proxy stops listening (the process keeps running)."""
        return self.apply("down", node, **opts)

    def up(self, node: TargetLike, **opts: Any) -> Fault:
        """Undo :meth:`down`: the node's proxy listens again."""
        return self.apply("up", node, **opts)

    def partition(self, side_a: TargetLike, side_b: TargetLike | None = None,
                  **opts: Any) -> Fault:
        """Cut node↔node traffic between ``side_a`` and ``side_b`` (default: every other node)
        in both directions; clients still reach every node."""
        other: dict[str, Any] = {"from": side_b}
        return self.apply("partition", side_a, **other, **opts)

    def heal(self, *, step: int | None = None) -> Event:
        """End every partition (works from a fresh process); returns the event."""
        return _event(self.apply("heal", step=step))

    def clear(self, node: TargetLike | None = None, *, node_side: bool = True,
              step: int | None = None) -> Event:
        """Remove every fault touching ``node`` (default: all nodes), see
        :class:`~harness.faults.families.clear.Clear`; returns the event."""
        return _event(self.apply("clear", node, node_side=node_side, step=step))

    def block_clients(self, node: TargetLike, prefix: int = 24, **opts: Any) -> Fault:
        """Make the /``prefix`` network of ``node`` unreachable from clients (a national
        firewall); node-to-node traffic keeps flowing."""
        return self.apply("block_clients", node, prefix=prefix, **opts)

    def skew_clock(self, node: TargetLike, offset_ms: int, **opts: Any) -> Fault:
        """Shift ``node``'s clock by ``offset_ms`` (removal restores the previous offset)."""
        return self.apply("skew_clock", node, offset_ms=offset_ms, **opts)

    def misbehave(self, node: TargetLike, *, rng: random.Random | None = None,
                  step: int | None = None, exclude: Sequence[str] = (),
                  **behaviours: Any) -> Fault:
        """Switch node behaviours (``drop_stores``, ``drop_relays``, ``corrupt_relays``,
        ``delay_ms``); removal restores their previous values."""
        return self.apply("misbehave", node, rng=rng, step=step, exclude=exclude, **behaviours)

    def kill(self, node: TargetLike, **opts: Any) -> Fault:
        """SIGKILL (process) / docker kill; removal starts the node again."""
        return self.apply("kill", node, **opts)

    def stop(self, node: TargetLike, **opts: Any) -> Fault:
        """Graceful stop; removal starts the node again."""
        return self.apply("stop", node, **opts)

    def start(self, node: TargetLike, **opts: Any) -> Fault:
        return self.apply("start", node, **opts)

    def restart(self, node: TargetLike, **opts: Any) -> Fault:
        return self.apply("restart", node, **opts)

    def pause(self, node: TargetLike, **opts: Any) -> Fault:
        """Freeze the node (SIGSTOP / docker pause); removal unpauses it."""
        return self.apply("pause", node, **opts)

    def unpause(self, node: TargetLike, **opts: Any) -> Fault:
        return self.apply("unpause", node, **opts)

    def decommission(self, node: TargetLike, **opts: Any) -> Fault:
        """Decommission at the seed (the node leaves its swarm); removal recommissions it."""
        return self.apply("decommission", node, **opts)

    def recommission(self, node: TargetLike, **opts: Any) -> Fault:
        return self.apply("recommission", node, **opts)

    def add_nodes(self, count: int = 1, *, timeout: float = 90.0,
                  step: int | None = None) -> Fault:
        """Join ``count`` new nodes and wait until the testnet is ready again."""
        return self.apply("add_nodes", count=count, timeout=timeout, step=step)


def _event(fault: Fault) -> Event:
    assert fault.event is not None  # apply records an event before it returns
    return fault.event


__all__ = ["ACTIONS", "Fault", "FaultError", "Faults", "TargetLike", "ToxiproxyError"]
