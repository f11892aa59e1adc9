"""Keeping the client's node pool and onion paths usable (docs/client.md).

* bootstrap: ``get_n_service_nodes`` (``active_only``) from a seed, kept as the node pool; when
  no seed answers, from the service nodes of a kept node list (``nodes=``): ``oxend_request``
  ``get_service_nodes`` to 3 of them through onion paths, keeping what they agree on (as
  session-desktop's ``getSnodePoolFromSnodes``);
* the pool is re-read when it is empty, too old or too small for a path plus a destination;
* onion paths are built by :mod:`harness.client.paths` under the exclusions of
  :class:`~harness.client.policy.PathPolicy`; a new guard is tested with a direct storage RPC
  first (session-desktop ``testGuardNode``); a request whose destination is on every path, or
  whose paths failed, gets a path of its own.
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import transport as tr
from .client_base import Operation
from .errors import BootstrapError, ClientError, DestinationError, NoPathError
from .failures import ErrorKind
from .onion_requests import OnionRequests, Target
from .paths import OnionPath, build_path
from .pool import NODES_ASKED, agreed, nodes_from_listing
from .records import AttemptRecord, OperationRecord, new_op_id
from .snode import Snode
from .transport import TransportError

SEED_FIELDS = ("public_ip", "storage_port", "pubkey_ed25519", "pubkey_x25519", "swarm_id",
               "storage_server_version")


class NodeUpkeep(OnionRequests):
    """Bootstrap, node pool refreshes and onion path building of the client."""

    # -- bootstrap / pool ---------------------------------------------------------------------
    async def bootstrap(self) -> OperationRecord:
        """Fetch the node pool from the seed(s) and build the onion paths."""
        op = self._start(OperationRecord(op_id=new_op_id("bootstrap"), kind="bootstrap",
                                         enc_type=self.config.enc_type))
        try:
            await self._refresh_pool(op)
            await self._ensure_paths(op)
        except ClientError as exc:
            self._finish(op, exc)
            exc.record = op.record
            raise
        op.record.details.update({"pool_size": len(self.pool), "height": self.pool.height,
                                  "paths": [p.refs() for p in self.paths.paths]})
        return self._finish(op)

    async def _refresh_pool(self, op: Operation) -> None:
        """Re-read the node pool from a seed; when no seed answers and the pool still has nodes
        (a kept list), from those nodes (:meth:`_refresh_from_nodes`)."""
        if self._refreshing_from_nodes:
            raise BootstrapError("the node pool is being refreshed from the service nodes")
        try:
            await self._refresh_from_seeds(op)
        except BootstrapError as exc:
            if len(self.pool) <= self.config.path_hops:
                raise
            await self._refresh_from_nodes(op, exc)

    async def _refresh_from_nodes(self, op: Operation, seed_error: BootstrapError) -> None:
        """session-desktop getSnodePoolFromSnodes: ask NODES_ASKED random nodes of the pool for
        ``get_service_nodes`` (``oxend_request``, through onion paths built from the pool) and
        keep the nodes all answers agree on."""
        self._refreshing_from_nodes = True
        try:
            asked = self._rng.sample(self.pool.nodes(), min(NODES_ASKED, len(self.pool)))
            listings: list[list[Snode]] = []
            errors: list[str] = []
            params = {"endpoint": "get_service_nodes",
                      "params": {"active_only": True, "fields": {f: True for f in SEED_FIELDS}}}
            for node in asked:

                def validate(dest: Snode, data: dict[str, Any], a: AttemptRecord) -> None:
                    if not nodes_from_listing(data):
                        raise DestinationError(dest, 200, json.dumps(data)[:200],
                                               method="oxend_request",
                                               detail="get_service_nodes lists no usable node")

                try:
                    _, data, _ = await self._call(op, "oxend_request", lambda _d: params,
                                                  Target(self, fixed=node), validate=validate)
                except ClientError as exc:
                    errors.append(f"{node}: {exc}")
                    continue
                listings.append(nodes_from_listing(data) or [])
                op.record.attempts[-1].actions.append(f"pool_from_node:{len(listings[-1])}")
            common = agreed(listings)
            if len(listings) < len(asked) or len(common) <= self.config.path_hops:
                raise BootstrapError(
                    f"{seed_error}; and the service nodes gave no agreed node list "
                    f"({len(listings)}/{len(asked)} answered, {len(common)} nodes in common"
                    + (f": {'; '.join(errors)}" if errors else "") + ")")
            self.pool.replace(common)
            self._after_pool_change(op.record.attempts[-1] if op.record.attempts else None)
            op.record.details["pool_from_nodes"] = len(common)
        finally:
            self._refreshing_from_nodes = False

    async def _refresh_from_seeds(self, op: Operation) -> None:
        async with self._pool_lock:
            self._last_refresh_try = time.monotonic()
            failures: list[str] = []
            seeds = list(self.seeds)
            self._rng.shuffle(seeds)
            for seed in seeds:
                url = f"{seed}/json_rpc"
                a = op.attempt("get_n_service_nodes", None, {"url": url}, None)
                t0 = time.monotonic()
                body = {"jsonrpc": "2.0", "id": 0, "method": "get_n_service_nodes",
                        "params": {"active_only": True, "fields": {f: True for f in SEED_FIELDS}}}
                try:
                    res = await self._transport.post(url, json.dumps(body).encode(),
                                                     timeout=self.config.seed_timeout,
                                                     content_type="application/json")
                except TransportError as exc:
                    a.elapsed_ms = (time.monotonic() - t0) * 1000
                    a.error_kind, a.error = ErrorKind.SEED.value, str(exc)
                    failures.append(f"{url}: {exc.kind}: {exc.detail}")
                    continue
                a.elapsed_ms = (time.monotonic() - t0) * 1000
                a.http_status = res.status
                nodes, height, problem = self._parse_seed(res)
                if problem:
                    a.error_kind, a.error = ErrorKind.SEED.value, problem
                    failures.append(f"{url}: {problem}")
                    continue
                a.ok = True
                a.actions.append(f"pool:{len(nodes)}")
                self.pool.replace(nodes, height=height)
                self._after_pool_change(a)
                return
            raise BootstrapError("no seed returned a usable service node list: " + "; ".join(failures))

    @staticmethod
    def _parse_seed(res: tr.HttpResult) -> tuple[list[Snode], int | None, str | None]:
        if res.status != 200:
            return [], None, f"HTTP {res.status}: {res.text()[:200]!r}"
        try:
            data = json.loads(res.body)
        except ValueError:
            return [], None, f"not JSON: {res.text()[:200]!r}"
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, dict):
            err = data.get("error") if isinstance(data, dict) else None
            return [], None, f"no result in answer (error: {err!r})"
        states = result.get("service_node_states")
        if not isinstance(states, list):
            return [], None, "result has no service_node_states list"
        nodes = [n for n in (Snode.from_seed_entry(e) for e in states) if n is not None]
        if not nodes:
            return [], None, f"no usable active node among {len(states)} entries"
        height = result.get("height") if isinstance(result.get("height"), int) else None
        return nodes, height, None

    def _after_pool_change(self, a: AttemptRecord | None = None) -> None:
        """Drop path hops and swarm members the new pool no longer lists."""
        for ed in sorted(self.paths.nodes_in_use()):
            if ed not in self.pool:
                for path, what in self.paths.repair(ed, self.pool.nodes()):
                    if a is not None:
                        a.actions.append(f"path_{what}:{path.id}:{ed[-8:]}:not_listed")
        for entry in self._swarms.values():
            entry.members = [m for m in entry.members if m.ed25519 in self.pool]

    def _pool_needs_refresh(self) -> bool:
        cfg = self.config
        if len(self.pool) == 0:
            return True
        age = self.pool.age()
        if age is not None and age > cfg.pool_max_age:
            return True
        needed = cfg.path_hops + 1
        return len(self.pool) < needed

    async def _ensure_ready(self, op: Operation) -> None:
        if self._closed:
            raise ClientError("the client is closed")
        if self._pool_needs_refresh():
            since = time.monotonic() - self._last_refresh_try
            if len(self.pool) == 0 or since >= self.config.pool_min_refresh_interval:
                try:
                    await self._refresh_pool(op)
                except BootstrapError:
                    if len(self.pool) == 0:
                        raise
        await self._ensure_paths(op)

    # -- paths --------------------------------------------------------------------------------
    async def _ensure_paths(self, op: Operation) -> None:
        refreshed = False
        while self.paths.missing():
            async with self._path_lock:
                wants_refresh = await self._build_paths(op, may_refresh=not refreshed)
            if not wants_refresh:
                return
            # re-read the pool outside the path lock: with no seed answering, the refresh asks
            # nodes through onion requests, which need paths themselves (and so the lock)
            refreshed = True
            try:
                await self._refresh_pool(op)
            except BootstrapError:
                pass

    async def _build_paths(self, op: Operation, *, may_refresh: bool) -> bool:
        """Build the missing paths (holding the path lock). True if the pool is too small for
        one and a pool refresh is due first; with fewer paths than wanted but at least one, the
        client runs with those; with none, NoPathError."""
        failed_guards: set[str] = set()
        rounds = 0
        while self.paths.missing():
            rounds += 1
            try:
                path = self.policy.graded(lambda ex: self.paths.build(self.pool.nodes(),
                                                                exclude=failed_guards | ex))
            except NoPathError:
                since = time.monotonic() - self._last_refresh_try
                if may_refresh and since >= self.config.pool_min_refresh_interval:
                    return True
                if len(self.paths) > 0:
                    return False  # run with fewer paths than wanted rather than not at all
                raise
            if self.config.test_guards and rounds <= 6 + self.config.path_count:
                if not await self._test_guard(op, path.guard):
                    failed_guards.add(path.guard.ed25519)
                    continue
            elif self.config.test_guards:
                raise NoPathError(f"no working guard found after {rounds - 1} guard tests "
                                  f"(failed: {sorted(g[-8:] for g in failed_guards)})")
            self.paths.add(path)
        return False

    def _request_path(self, exclude: set[str]) -> OnionPath:
        """A path for one request only (not kept with the client's paths)."""
        return build_path(self.pool.nodes(), [], hops=self.config.path_hops,
                          subnet_diversity=self.config.subnet_diversity, rng=self._rng,
                          exclude=exclude)

    def _one_off_path(self, dest: Snode, method: str) -> OnionPath:
        """Every path contains ``dest``: build a path for this request only (libsession builds an
        extra path when no path fits a destination)."""
        try:
            return self.policy.graded(lambda ex: self._request_path({dest.ed25519} | ex))
        except NoPathError as exc:
            raise NoPathError(f"{method}: every onion path contains the destination {dest} and no "
                              f"other path can be built from {len(self.pool)} known nodes: {exc}") from None

    def _fresh_path_around(self, op: Operation, dest: Snode) -> OnionPath | None:
        """A path for this request only that avoids the destination, suspect nodes and every
        node of the paths that already failed this operation; failing that, one that avoids at
        least the nodes that said they are not ready; None if the pool has too few."""
        base = {dest.ed25519} | op.avoid
        tiers = [base | self.policy.quarantined() | self.policy.unreachable_nodes() | op.failed_hops]
        if op.avoid:
            tiers += [base | self.policy.unreachable_nodes(), base]
        for ex in tiers:
            try:
                path = self._request_path(ex)
            except NoPathError:
                continue
            op.record.details["fresh_paths"] = op.record.details.get("fresh_paths", 0) + 1
            return path
        return None

    async def _test_guard(self, op: Operation, guard: Snode) -> bool:
        """session-desktop testGuardNode: a direct storage RPC must answer 200."""
        return await self._direct_info(op, guard, "guard_test", "guard candidate")

    async def _answers_directly(self, op: Operation, node: Snode) -> bool:
        """The node on every failed route is asked directly, as a new guard is tested."""
        return await self._direct_info(op, node, "suspect_test", "suspect")

    async def _direct_info(self, op: Operation, node: Snode, method: str, role: str) -> bool:
        """A direct ``info`` storage RPC to ``node``, recorded as a ``method`` attempt: True if
        it answers 200. A node that does not is struck, and one that cannot be reached is kept
        out of new paths for a while (:meth:`PathPolicy.mark_unreachable`)."""
        url = f"{node.url}/storage_rpc/v1"
        a = op.attempt(method, None, node.ref(), None)
        t0 = time.monotonic()
        try:
            res = await self._transport.post(url, json.dumps({"method": "info", "params": {}}).encode(),
                                             timeout=self.config.guard_test_timeout,
                                             content_type="application/json")
        except TransportError as exc:
            a.elapsed_ms = (time.monotonic() - t0) * 1000
            a.error_kind, a.error = ErrorKind(exc.kind).value, f"{role} {node} unreachable: {exc.detail}"
            a.failed_node = node.ref()
            self.policy.mark_unreachable(node)
            self.policy.strike_node(node, f"{method.replace('_', ' ')} failed", a)
            return False
        a.elapsed_ms = (time.monotonic() - t0) * 1000
        a.http_status = res.status
        if res.status != 200:
            a.error_kind, a.error = ErrorKind.DESTINATION.value, f"{role} {node} answered {res.status}: {res.text()[:200]!r}"
            a.failed_node = node.ref()
            self.policy.strike_node(node, f"{method.replace('_', ' ')} failed", a)
            return False
        self._observe_time(node, res.body)
        a.ok = True
        return True
