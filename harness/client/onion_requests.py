"""One storage RPC through an onion path, with retries (docs/client.md, "Behaviour and its
sources").

:class:`Target` chooses the destination of each attempt (a random swarm member, a fixed node or
any node of the pool); :class:`OnionRequests` sends the request through an onion path (2 paths,
3 hops, distinct guards, /24 diversity, destination never on the path — see
:mod:`harness.client.paths`), has each failed attempt classified by
:mod:`harness.client.failures` (an :class:`~harness.client.failures.Outcome` says how the request
goes on), retries (bounded, exponential backoff), re-reads the network time after a 406 and
follows a 421 into the new swarm.  Strikes, drops and quarantine are kept by
:class:`~harness.client.policy.PathPolicy`.
"""

from __future__ import annotations

import abc
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nodes.protocol.onion import OnionError, build_onion_request, decrypt_onion_response, parse_enc_type

from .client_base import ClientBase, Operation
from .errors import ClientError, DestinationError, NoPathError, StoreUnconfirmed, SwarmError
from .failures import ErrorKind, Outcome, Verdict
from .paths import OnionPath
from .records import ONE_OFF_PATH, AttemptRecord
from .snode import Snode
from .transport import TransportError


def _route(path: OnionPath, dest: Snode) -> set[str]:
    """The nodes a request through ``path`` to ``dest`` depends on."""
    return {h.ed25519 for h in path.hops} | {dest.ed25519}


class Target:
    """Chooses the destination of each attempt of one request."""

    def __init__(self, client: OnionRequests, *, pubkey: str | None = None,
                 fixed: Snode | None = None,
                 prefer: Callable[[list[Snode]], list[Snode]] | None = None,
                 enc_type: str | None = None) -> None:
        self.client = client
        self.enc_type = enc_type
        self.pubkey = pubkey
        self.fixed = fixed
        self.prefer = prefer
        self.excluded: set[str] = set()
        #: destinations already tried by this request: others are preferred on a retry (a
        #: timeout through a path may be the destination's fault as well as a relay's)
        self.tried: set[str] = set()
        self.refetched = False
        self.members: list[Snode] = []

    async def pick(self, op: Operation) -> Snode:
        c = self.client
        if self.fixed is not None:
            if self.fixed.ed25519 in self.excluded:
                raise DestinationError(self.fixed, None, "", detail="the polled node failed; not retrying it")
            return self.fixed
        if self.pubkey is None:  # any node (get_swarm, info)
            in_use = c.paths.nodes_in_use()
            nodes = [n for n in c.pool.nodes() if n.ed25519 not in self.excluded]
            nodes = c.policy.prefer_reachable(nodes)
            free = [n for n in nodes if n.ed25519 not in in_use]
            choice = free or nodes
            if not choice:
                raise NoPathError(f"no node left to ask ({len(c.pool)} in pool, "
                                  f"{len(self.excluded)} failed for this request)")
            return c._rng.choice(choice)
        while True:
            self.members = await c._swarm_members(self.pubkey, op, refresh=False, enc_type=self.enc_type)
            candidates = [m for m in self.members if m.ed25519 not in self.excluded]
            if candidates:
                break
            if self.refetched:
                raise SwarmError(
                    f"no usable member left in the swarm of {self.pubkey} "
                    f"(members {[str(m) for m in self.members]}, failed for this request: "
                    f"{sorted(e[-8:] for e in self.excluded)})")
            self.refetched = True
            await c._swarm_members(self.pubkey, op, refresh=True, enc_type=self.enc_type)
        candidates = c.policy.prefer_reachable(candidates)
        candidates = [m for m in candidates if m.ed25519 not in self.tried] or candidates
        if self.prefer is not None:
            candidates = self.prefer(candidates) or candidates
        # a destination on neither path can use any path; one on every path (possible when a
        # small network made paths share hops) is only used if nothing else is left
        in_use = c.paths.nodes_in_use()
        free = [m for m in candidates if m.ed25519 not in in_use]
        reachable = [m for m in candidates if c.paths.choose(m.ed25519) is not None]
        return c._rng.choice(free or reachable or candidates)


class OnionRequests(ClientBase, abc.ABC):
    """Sends storage RPCs through onion paths and retries them per the failure rules.

    The pool and paths (:class:`~harness.client.upkeep.NodeUpkeep`) and the swarm lookup
    (:class:`~harness.client.client.SessionClient`) are the subclasses' part: the abstract
    methods below are theirs (a class that leaves one out cannot be instantiated).
    """

    @abc.abstractmethod
    async def _ensure_ready(self, op: Operation) -> None:
        """Make sure the pool and the onion paths can carry a request."""

    @abc.abstractmethod
    async def _refresh_pool(self, op: Operation) -> None:
        """Re-read the node pool."""

    @abc.abstractmethod
    def _one_off_path(self, dest: Snode, method: str) -> OnionPath:
        """A path for one request to ``dest`` when every kept path contains it."""

    @abc.abstractmethod
    def _fresh_path_around(self, op: Operation, dest: Snode) -> OnionPath | None:
        """A path for one request around the nodes that failed this operation."""

    @abc.abstractmethod
    async def _answers_directly(self, op: Operation, node: Snode) -> bool:
        """Whether ``node`` answers a direct request (a dead or frozen node does not)."""

    @abc.abstractmethod
    async def _swarm_members(self, session_id: str, op: Operation, *, refresh: bool,
                             enc_type: str | None = None) -> list[Snode]:
        """The (cached) members of the swarm of ``session_id``."""

    # -- one onion request ----------------------------------------------------------------------
    async def _attempt(self, op: Operation, *, method: str, params: dict[str, Any], dest: Snode,
                       path: OnionPath, enc_type: str, associated_with: str | None) -> Verdict:
        a = op.attempt(method, path, dest.ref(), enc_type)
        payload = json.dumps({"method": method, "params": params}, separators=(",", ":")).encode()
        req = build_onion_request([h.hop() for h in path.hops], dest.hop(), payload, enc_type)
        guard = path.guard
        url = f"{guard.url}/onion_req/v2"
        t0 = time.monotonic()
        try:
            res = await self._transport.post(url, req.frame, timeout=self.config.request_timeout)
        except TransportError as exc:
            a.elapsed_ms = (time.monotonic() - t0) * 1000
            return self.failures.transport(a, exc, path, dest, method)
        a.elapsed_ms = (time.monotonic() - t0) * 1000
        a.http_status = res.status
        if res.status != 200:
            return self.failures.path_status(op.reported_421, a, res, path, dest, method, associated_with)
        try:
            status, body = decrypt_onion_response(req, res.body)
        except OnionError as exc:
            return self.failures.undecryptable(a, res, path, method, exc)
        a.status = status
        data: Any = None
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            self._observe_time(dest, data)
        if 200 <= status < 300:
            if not isinstance(data, dict):
                return self.failures.not_an_object(a, status, body, dest, method)
            a.ok = True
            return Verdict(Outcome.OK, data=data)
        return self.failures.destination(op.reported_421, a, status, body, data, path, dest, method,
                                         associated_with)

    # -- a request with retries ---------------------------------------------------------------
    def _backoff(self, retry: int) -> float:
        cfg = self.config
        return float(min(cfg.retry_backoff * (2 ** (retry - 1)), cfg.retry_backoff_max))

    async def _call(
        self,
        op: Operation,
        method: str,
        make_params: Callable[[Snode], dict[str, Any]],
        target: Target,
        *,
        enc_type: str | None = None,
        validate: Callable[[Snode, dict[str, Any], AttemptRecord], Awaitable[None] | None] | None = None,
    ) -> tuple[Snode, dict[str, Any], OnionPath]:
        """Send one storage RPC through an onion path, retrying per the failure rules."""
        enc = parse_enc_type(enc_type or self.config.enc_type)
        last: ClientError | None = None
        clock_retried = False
        for n in range(1, self.config.max_attempts + 1):
            await self._ensure_ready(op)
            try:
                dest = await target.pick(op)
            except (DestinationError, SwarmError, NoPathError):
                if last is not None:  # no destination left: the last failure says why
                    raise last from None
                raise
            path = self.paths.choose(dest.ed25519, avoid=op.failed_paths)
            if path is None:
                try:
                    path = self._one_off_path(dest, method)
                except NoPathError:
                    # struck-out nodes left too few for a path plus a destination: re-read the
                    # network from the seed once (session-desktop refreshes a too-small pool)
                    if op.pool_refreshed:
                        raise
                    op.pool_refreshed = True
                    await self._refresh_pool(op)
                    path = self.paths.choose(dest.ed25519) or self._one_off_path(dest, method)
            elif path.id in op.failed_paths or op.avoid & {h.ed25519 for h in path.hops}:
                # the only path that fits already failed this operation, or holds a node that
                # said it is not ready: go around them
                path = self._fresh_path_around(op, dest) or path
            one_off = self.paths.get(path.id) is None  # built for this request only
            result = await self._attempt(op, method=method, params=make_params(dest), dest=dest,
                                         path=path, enc_type=enc, associated_with=target.pubkey)
            if one_off:  # after what the client did about the answer (reports read those first)
                op.record.attempts[-1].actions.append(ONE_OFF_PATH)
            if result.kind == Outcome.OK:
                assert result.data is not None
                if validate is not None:
                    a = op.record.attempts[-1]
                    try:
                        maybe = validate(dest, result.data, a)
                        if maybe is not None:
                            await maybe
                    except DestinationError as exc:
                        a.ok = False
                        a.error_kind = (ErrorKind.UNCONFIRMED if isinstance(exc, StoreUnconfirmed) else ErrorKind.DESTINATION).value
                        a.error = str(exc)
                        a.failed_node = dest.ref()
                        self.policy.strike_node(dest, "unconfirmed store", a)
                        target.excluded.add(dest.ed25519)
                        target.tried.add(dest.ed25519)
                        last = exc
                        if n < self.config.max_attempts:
                            await asyncio.sleep(self._backoff(n))
                        continue
                self.policy.route_worked(_route(path, dest))
                return dest, result.data, path
            last = result.error
            if result.kind == Outcome.FATAL:
                assert last is not None
                raise last
            if result.kind == Outcome.CLOCK:
                if clock_retried:
                    assert last is not None
                    raise last
                clock_retried = True
                await self._resync_clock(op, dest, path, enc)
                continue
            target.tried.add(dest.ed25519)
            if result.avoid is not None:
                op.avoid.add(result.avoid)
                op.failed_hops.add(result.avoid)
                target.excluded.add(result.avoid)
            if result.kind == Outcome.RETRY_PATH:
                op.failed_paths.add(path.id)
                a = op.record.attempts[-1]
                if result.avoid is None:  # else the answer named the node at fault (avoided)
                    op.failed_hops.update(h.ed25519 for h in path.hops)
                # nobody named, and a node may be dead: the path's hops or the destination
                if a.failed_node is None and result.dead_node_possible:
                    culprit = self.policy.route_failed(_route(path, dest), a)
                    if culprit is not None:
                        suspect = self.policy.pool.get(culprit)  # None: another request dropped it
                        if suspect is not None and await self._answers_directly(op, suspect):
                            self.policy.acquit(culprit, a)
                        else:
                            if suspect is not None:
                                self.policy.convict(culprit, a)
                            # the node is gone from the pool, the swarm caches and the paths:
                            # the paths and hops that failed with it are not suspect any more
                            target.excluded.add(culprit)
                            op.failed_paths.clear()
                            op.failed_hops = set(op.avoid)
            elif result.kind in (Outcome.RETRY_DEST, Outcome.SWARM_MOVED):
                target.excluded.add(dest.ed25519)
                if result.kind == Outcome.SWARM_MOVED:
                    continue
            if n < self.config.max_attempts:
                await asyncio.sleep(self._backoff(n))
        assert last is not None
        raise last

    async def _resync_clock(self, op: Operation, dest: Snode, path: OnionPath, enc: str) -> None:
        """session-desktop getNetworkTime: ``info`` to a node, take its time as network time."""
        if self.paths.get(path.id) is None:
            path = self.paths.choose(dest.ed25519) or path
        before = self.clock.offset_ms
        # the network rejected our time: start over from what this node says (desktop averages
        # the last answers, which would keep stale samples from before a clock jump)
        self.clock.reset()
        op.clock_resyncs += 1
        await self._attempt(op, method="info", params={}, dest=dest, path=path, enc_type=enc,
                            associated_with=None)
        op.record.attempts[-1].actions.append(f"clock_offset:{before}->{self.clock.offset_ms}")
