"""Which nodes a fault hits: typed targets, resolved against the live testnet at apply time.

A :class:`Target` is pure data with a string form (used by the CLI, schedule files and the
timeline):

=========================  ==================================================================
``sn01,sn02``              these nodes (names or Ed25519 hex)
``all``                    every node of the testnet
``random:2``               2 nodes drawn from all nodes
``random:30%``             30 % of all nodes (rounded, at least one)
``swarm:0x7fff…[:N]``      the members of that swarm (or N of them); id in hex (0x…) or decimal
``swarm-of:05ab…[:N]``     the members (or N) of the swarm that currently owns Session ID 05ab…
``guard``                  the guard (first hop) of the client's current onion path
``fileserver``             the testnet's file server (by name only: never part of ``all``,
                           ``random`` or swarm targets)
=========================  ==================================================================

Resolution is deterministic: candidates are sorted by node name, random draws come from the
``random.Random`` the caller passes (seeded per fault / per schedule step), and the result is
sorted by node name. Swarm membership comes from a :class:`NetworkView` (the seed's current
swarm ids, see :func:`live_view`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from harness import rpc
from harness.state import NetworkState
from nodes.protocol.keys import SessionID
from nodes.protocol.swarm import UNASSIGNED_SWARM, swarm_for, swarm_space

#: returns the guard of the client's current path: a node name or an Ed25519 hex key
GuardProvider = Callable[[], str]

KINDS = ("nodes", "all", "random", "swarm", "swarm_of", "guard")


class TargetError(ValueError):
    """A target spec is invalid or cannot be resolved; the message says which and why."""


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ed25519: str
    swarm_id: int | None = None
    active: bool = True


@dataclass(frozen=True)
class NetworkView:
    """The nodes of a testnet and their current swarms, as seen when a target is resolved."""

    nodes: tuple[NodeInfo, ...]
    #: runtimes that are targets by name only (the file server), not storage nodes
    named: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(sorted(self.nodes, key=lambda n: n.name)))

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def name_of(self, key_or_name: str) -> str:
        for n in self.nodes:
            if key_or_name in (n.name, n.ed25519):
                return n.name
        if key_or_name in self.named:
            return key_or_name
        known = ", ".join(self.names + list(self.named)) or "none"
        raise TargetError(f"no node {key_or_name!r} in this testnet (nodes: {known})")

    def swarms(self) -> dict[int, list[str]]:
        """Swarm id -> sorted member names (active nodes with a swarm only)."""
        out: dict[int, list[str]] = {}
        for n in self.nodes:
            if n.active and n.swarm_id is not None and n.swarm_id != UNASSIGNED_SWARM:
                out.setdefault(n.swarm_id, []).append(n.name)
        return out

    @classmethod
    def from_state(cls, state: NetworkState) -> NetworkView:
        """From the state file (swarm ids as last recorded by ``up`` / ``Testnet.refresh``)."""
        return cls(tuple(NodeInfo(n.name, n.pubkey_ed25519, n.swarm_id) for n in state.nodes),
                   named=_named(state))


async def _seed_swarms(seed_url: str) -> dict[str, tuple[int | None, bool]]:
    async with rpc.new_session() as session:
        res = await rpc.seed_rpc(session, seed_url, "get_n_service_nodes",
                                 {"active_only": False,
                                  "fields": {"pubkey_ed25519": True, "swarm_id": True,
                                             "active": True}})
    out: dict[str, tuple[int | None, bool]] = {}
    for sn in res.get("service_node_states", []):
        sid = sn.get("swarm_id")
        out[sn.get("pubkey_ed25519", "")] = (
            None if sid in (None, UNASSIGNED_SWARM) else int(sid), bool(sn.get("active")))
    return out


def live_view(state: NetworkState) -> NetworkView:
    """Nodes from the state, swarm ids and activity from the seed right now (raises
    :class:`harness.rpc.RpcError` if the seed does not answer). Nodes the seed does not know
    (deregistered, not yet registered) are inactive."""
    live = rpc.run_sync(_seed_swarms(state.seed_url))
    nodes = []
    for n in state.nodes:
        sid, active = live.get(n.pubkey_ed25519, (None, False))
        nodes.append(NodeInfo(n.name, n.pubkey_ed25519, sid, active))
    return NetworkView(tuple(nodes), named=_named(state))


def _named(state: NetworkState) -> tuple[str, ...]:
    return (state.fileserver.name,) if state.fileserver is not None else ()


def _parse_count(text: str, spec: str) -> tuple[int | None, float | None]:
    text = text.strip()
    if text.endswith("%"):
        try:
            pct = float(text[:-1])
        except ValueError:
            raise TargetError(f"target {spec!r}: {text!r} is not a percentage") from None
        if not 0 < pct <= 100:
            raise TargetError(f"target {spec!r}: percentage must be in (0, 100], got {pct}")
        return None, pct
    try:
        count = int(text)
    except ValueError:
        raise TargetError(f"target {spec!r}: {text!r} is not a node count") from None
    if count < 1:
        raise TargetError(f"target {spec!r}: count must be >= 1, got {count}")
    return count, None


def _parse_swarm_id(text: str, spec: str) -> int:
    t = text.strip().lower()
    try:
        value = int(t, 16) if t.startswith("0x") or not t.isdigit() else int(t)
    except ValueError:
        raise TargetError(f"target {spec!r}: swarm id {text!r} is neither decimal nor hex "
                          "(write hex as 0x…)") from None
    if not 0 <= value < UNASSIGNED_SWARM:
        raise TargetError(f"target {spec!r}: swarm id {text!r} is not a valid u64 swarm id")
    return value


@dataclass(frozen=True)
class Target:
    """A node selection; see the module docstring for the kinds and their string forms."""

    kind: str
    names: tuple[str, ...] = ()
    count: int | None = None
    percent: float | None = None
    swarm: int | None = None
    account: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TargetError(f"unknown target kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.kind == "nodes" and not self.names:
            raise TargetError("a 'nodes' target needs at least one node name")
        if self.kind == "random" and self.count is None and self.percent is None:
            raise TargetError("a 'random' target needs a count or a percentage")
        if self.kind == "swarm" and self.swarm is None:
            raise TargetError("a 'swarm' target needs a swarm id")
        if self.kind == "swarm_of":
            if not self.account:
                raise TargetError("a 'swarm_of' target needs a Session ID")
            try:
                SessionID.parse(self.account)
            except ValueError as e:
                raise TargetError(f"target swarm-of: {e}") from None

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def parse(cls, spec: str | Target | Sequence[str]) -> Target:
        """``Target`` from its string form (a Target is returned as is; a list of names is a
        ``nodes`` target)."""
        if isinstance(spec, Target):
            return spec
        if not isinstance(spec, str):
            names = tuple(str(s).strip() for s in spec if str(s).strip())
            return cls("nodes", names=names)
        s = spec.strip()
        if not s:
            raise TargetError("empty target: give node names (sn01,sn02), 'all', 'random:N', "
                              "'random:P%', 'swarm:ID', 'swarm-of:SESSION_ID[:N]' or 'guard'")
        low = s.lower()
        if low == "all":
            return cls("all")
        if low == "guard":
            return cls("guard")
        head, sep, rest = s.partition(":")
        head = head.lower()
        if sep and head == "random":
            count, pct = _parse_count(rest, s)
            return cls("random", count=count, percent=pct)
        if sep and head == "swarm":
            sid, _, n = rest.partition(":")
            count = _parse_count(n, s)[0] if n else None
            if n and count is None:
                raise TargetError(f"target {s!r}: the member count must be a number")
            return cls("swarm", swarm=_parse_swarm_id(sid, s), count=count)
        if sep and head in ("swarm-of", "swarm_of"):
            account, _, n = rest.partition(":")
            count = _parse_count(n, s)[0] if n else None
            if n and count is None:
                raise TargetError(f"target {s!r}: the member count must be a number")
            return cls("swarm_of", account=account.strip().lower(), count=count)
        if sep:
            raise TargetError(f"unknown target {s!r}: known forms are node names (sn01,sn02), "
                              "'all', 'random:N', 'random:P%', 'swarm:ID[:N]', "
                              "'swarm-of:SESSION_ID[:N]', 'guard'")
        names = tuple(p.strip() for p in s.split(",") if p.strip())
        return cls("nodes", names=names)

    # -- string form -------------------------------------------------------------------------
    def __str__(self) -> str:
        n = f":{self.count}" if self.count is not None else ""
        if self.kind == "nodes":
            return ",".join(self.names)
        if self.kind == "random":
            return f"random:{self.count}" if self.count is not None else f"random:{self.percent:g}%"
        if self.kind == "swarm":
            return f"swarm:{self.swarm:#x}{n}"
        if self.kind == "swarm_of":
            return f"swarm-of:{self.account}{n}"
        return self.kind

    @property
    def needs_swarms(self) -> bool:
        return self.kind in ("swarm", "swarm_of")

    @property
    def is_random(self) -> bool:
        """Whether resolution draws from the RNG."""
        return self.kind == "random" or (self.needs_swarms and self.count is not None)

    # -- resolution --------------------------------------------------------------------------
    def resolve(self, view: NetworkView, rng: random.Random | None = None, *,
                guard_provider: GuardProvider | None = None,
                exclude: Iterable[str] = ()) -> list[str]:
        """The node names this target selects now, sorted. ``exclude`` removes nodes from the
        candidates of random draws (explicit names are never excluded); a draw then takes as
        many as are left. Impossible targets raise :class:`TargetError`: unknown names, more
        nodes than the testnet has (``random:9`` of 6), more members than the swarm has."""
        if self.kind == "nodes":
            return sorted({view.name_of(n) for n in self.names})
        if self.kind == "all":
            return list(view.names)
        if self.kind == "guard":
            if guard_provider is None:
                raise TargetError("target 'guard' needs a guard provider: pass "
                                  "guard_provider=<callable returning the guard's name or "
                                  "Ed25519 key> to Faults (the client registers one)")
            guard = guard_provider()
            if not guard:
                raise TargetError("target 'guard': the client has no onion path (no guard) yet")
            return [view.name_of(guard)]
        excluded = set(exclude)
        if self.kind == "random":
            candidates = [n for n in view.names if n not in excluded]
            if self.count is not None:
                if self.count > len(view.names):
                    raise TargetError(
                        f"target {self}: asks for {self.count} nodes but the testnet has "
                        f"{len(view.names)} ({', '.join(view.names) or 'none'}); give a count "
                        f"of at most {len(view.names)}, a percentage or 'all'")
                k = self.count
            else:
                k = max(1, round(len(view.names) * (self.percent or 0) / 100))
            return self._draw(candidates, k, rng)
        swarms = view.swarms()
        if not swarms:
            raise TargetError(f"target {self}: no swarms are known (is the seed answering and "
                              "are nodes registered?)")
        if self.kind == "swarm":
            if self.swarm not in swarms:
                known = ", ".join(f"{s:#x}" for s in sorted(swarms))
                raise TargetError(f"target {self}: no active swarm {self.swarm:#x} "
                                  f"(swarms now: {known})")
            members = swarms[self.swarm]
        else:
            sid = swarm_for(swarm_space(SessionID.parse(self.account or "")), swarms)
            members = swarms[sid]
        if self.count is None:
            return sorted(members)
        if self.count > len(members):
            raise TargetError(f"target {self}: asks for {self.count} members but the swarm has "
                              f"{len(members)} active ({', '.join(members)}); give a count of "
                              f"at most {len(members)} or leave it out for all members")
        return self._draw([m for m in members if m not in excluded], self.count, rng)

    def _draw(self, candidates: list[str], k: int, rng: random.Random | None) -> list[str]:
        if not candidates:
            raise TargetError(f"target {self}: no candidate node left to choose from")
        if rng is None:
            raise TargetError(f"target {self} draws at random: pass a seeded random.Random")
        k = min(k, len(candidates))
        return sorted(rng.sample(sorted(candidates), k))


__all__ = ["Target", "TargetError", "NetworkView", "NodeInfo", "GuardProvider", "live_view",
           "KINDS"]
