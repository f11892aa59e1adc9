"""The asyncio Session client.

:class:`SessionClient` talks to a testnet (or any Session network) the way session-desktop and
libsession-util do:

* bootstrap: ``get_n_service_nodes`` (``active_only``) from a seed, kept as the node pool; when
  no seed answers, from the service nodes of a kept node list (``nodes=``): ``oxend_request``
  ``get_service_nodes`` to 3 of them through onion paths, keeping what they agree on (as
  session-desktop's ``getSnodePoolFromSnodes``);
* every storage RPC goes through an onion path (2 paths, 3 hops, distinct guards, /24
  diversity, destination never on the path) — see :mod:`harness.client.paths`;
* ``get_swarm`` (``get_snodes_for_pubkey``) to a random node, cached per account;
* ``send``: a real Session 1-to-1 message stored in namespace 0 with a 14-day TTL on a random
  member of the recipient's swarm;
* ``receive``: signed ``retrieve`` with the last hash of each polled node, deduplicated by hash,
  decrypted and verified (sender derived from the signature key);
* failure handling (see docs/client.md for the table and sources): each failed attempt is
  classified by :mod:`harness.client.failures` (an :class:`~harness.client.failures.Outcome`
  says how the request goes on), strikes, drops and quarantine are kept by
  :class:`~harness.client.policy.PathPolicy`; this module retries (bounded, exponential backoff),
  re-reads the network time after a 406 and follows a 421 into the new swarm;
* every operation produces an :class:`~harness.client.records.OperationRecord` for the sink.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nodes.protocol.encoding import b64decode_any
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import PREFIX_X25519, Identity, SessionID, verify_ed25519
from nodes.protocol.message import AttachmentRef, MessageError, decrypt_message, encrypt_message
from nodes.protocol.onion import OnionError, build_onion_request, decrypt_onion_response, parse_enc_type
from nodes.protocol.signing import retrieve_message, sign_request

from . import attachments as att
from . import transport as tr
from .account import Account
from .clock import NetworkClock
from .config import POLL_ALL, POLL_SAMPLE, RETRIEVE_SNODES_COUNT, ClientConfig
from .errors import (
    BootstrapError,
    ClientError,
    DestinationError,
    NoPathError,
    RetrieveFailed,
    StoreFailed,
    StoreUnconfirmed,
    SwarmError,
    Timeout,
)
from .failures import ErrorKind, FailureClassifier, Outcome, Verdict
from .paths import OnionPath, PathSet, build_path
from .policy import PathPolicy
from .pool import NODES_ASKED, NodePool, agreed, nodes_from_listing
from .records import (
    ONE_OFF_PATH,
    OUTCOME_ERROR,
    OUTCOME_OK,
    AttemptRecord,
    OperationRecord,
    ReceiveRecord,
    RecordSink,
    SendRecord,
    emit,
    new_op_id,
)
from .snode import Snode, SwarmEntry, parse_swarm_body
from .transport import AiohttpTransport, Transport, TransportError

SEED_FIELDS = ("public_ip", "storage_port", "pubkey_ed25519", "pubkey_x25519", "swarm_id",
               "storage_server_version")
GET_SWARM_METHOD = "get_snodes_for_pubkey"  # session-desktop's name (alias of get_swarm)

@dataclass
class Received:
    """A 1-to-1 message fetched from the own swarm, decrypted and verified."""

    sender: str
    body: str
    hash: str
    #: DataMessage timestamp (the sender's network time when sending)
    timestamp_ms: int
    envelope_timestamp_ms: int
    display_name: str | None
    namespace: int
    #: storage expiry (ms) and the node it was fetched from
    expiration_ms: int | None
    node: str
    #: the message's attachment pointers (download with SessionClient.download_attachment)
    attachments: tuple[AttachmentRef, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        """The CLI's JSON shape: {"from", "body", "hash", "timestamp"}."""
        out: dict[str, Any] = {"from": self.sender, "body": self.body, "hash": self.hash,
                               "timestamp": self.timestamp_ms}
        if self.attachments:
            out["attachments"] = [att.ref_summary(r) for r in self.attachments]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "sender": self.sender, "body": self.body, "hash": self.hash,
            "timestamp_ms": self.timestamp_ms, "envelope_timestamp_ms": self.envelope_timestamp_ms,
            "display_name": self.display_name, "namespace": self.namespace,
            "expiration_ms": self.expiration_ms, "node": self.node,
            "attachments": [att.ref_summary(r) for r in self.attachments],
        }


class _Op:
    """An operation in progress: its record plus per-operation retry state."""

    def __init__(self, record: OperationRecord) -> None:
        self.record = record
        self.failed_paths: set[str] = set()
        #: every hop of those paths (which hop failed is unknown: a relay answers 504 for any)
        self.failed_hops: set[str] = set()
        #: nodes that said they are not ready (503): kept off this operation's paths and
        #: destinations
        self.avoid: set[str] = set()
        self.reported_421: set[tuple[str, str]] = set()
        #: times the network rejected our timestamp and the clock was re-read (406/425)
        self.clock_resyncs = 0
        #: the pool was re-read from the seed because no path could be built
        self.pool_refreshed = False

    def attempt(self, method: str, path: OnionPath | None, dest: dict[str, Any] | None,
                enc_type: str | None) -> AttemptRecord:
        a = AttemptRecord(n=len(self.record.attempts) + 1, method=method,
                          path=path.refs() if path else [], destination=dest, enc_type=enc_type,
                          started_at=time.time())
        self.record.attempts.append(a)
        return a


def _route(path: OnionPath, dest: Snode) -> set[str]:
    """The nodes a request through ``path`` to ``dest`` depends on."""
    return {h.ed25519 for h in path.hops} | {dest.ed25519}


class _Target:
    """Chooses the destination of each attempt of one request."""

    def __init__(self, client: SessionClient, *, pubkey: str | None = None,
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

    async def pick(self, op: _Op) -> Snode:
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


class SessionClient:
    """A Session client bound to one account.  Use as ``async with SessionClient(...) as c:``.

    ``seeds``: seed URL(s) (``http://127.X.0.1:22023``; ``/json_rpc`` is appended).
    ``account``: an :class:`Account`, an :class:`Identity` or None (a new random account).
    ``sink``: where finished operation records go (a list, or a callable).
    ``transport`` / ``clock`` / ``rng``: injectable for tests (``local_now_ms`` skews the clock).
    ``nodes``: a node list kept from an earlier run (an app's database, ``pool.nodes()``): the
    pool starts with it, and a refresh no seed answers asks these nodes instead.
    ``file_server``: the :class:`~harness.client.attachments.FileServer` attachments go to.
    Settings: a :class:`ClientConfig` and/or keyword overrides (``enc_type="xchacha20"``, …).
    """

    def __init__(
        self,
        seeds: str | Sequence[str],
        account: Account | Identity | None = None,
        *,
        config: ClientConfig | None = None,
        sink: RecordSink | None = None,
        transport: Transport | None = None,
        clock: NetworkClock | None = None,
        local_now_ms: Callable[[], int] | None = None,
        rng: random.Random | None = None,
        nodes: Sequence[Snode] | None = None,
        file_server: att.FileServer | None = None,
        **overrides: Any,
    ) -> None:
        seed_list = [seeds] if isinstance(seeds, str) else list(seeds)
        if not seed_list:
            raise ValueError("at least one seed URL is needed")
        self.seeds = [s.rstrip("/") for s in seed_list]
        if account is None:
            account = Account.generate()
        elif isinstance(account, Identity):
            account = Account(account)
        self.account: Account = account
        base = config or ClientConfig()
        self.config = base.with_overrides(**overrides) if overrides else base
        self.sink = sink
        self._transport: Transport = transport or AiohttpTransport()
        self.clock = clock or (NetworkClock(local_now_ms) if local_now_ms else NetworkClock())
        self._rng = rng or random.Random()
        cfg = self.config
        self.pool = NodePool(cfg.node_failure_threshold, rng=self._rng)
        self.paths = PathSet(count=cfg.path_count, hops=cfg.path_hops,
                             failure_threshold=cfg.path_failure_threshold,
                             subnet_diversity=cfg.subnet_diversity, rng=self._rng)
        self._swarms: dict[str, SwarmEntry] = {}
        self.policy = PathPolicy(cfg, self.pool, self.paths, self._swarms)
        self.failures = FailureClassifier(self.policy, self.set_cached_swarm)
        self._last_hash: dict[tuple[str, int], str] = {}
        self._seen: set[str] = set()
        self._path_lock = asyncio.Lock()
        self._pool_lock = asyncio.Lock()
        self._last_refresh_try = 0.0
        #: a refresh from the service nodes is running (its own requests must not start one)
        self._refreshing_from_nodes = False
        if nodes:
            self.pool.load(nodes)
        self.file_server = file_server
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> SessionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._transport.close()

    # -- properties ---------------------------------------------------------------------------
    @property
    def identity(self) -> Identity:
        return self.account.identity

    @property
    def session_id(self) -> str:
        return self.account.session_id

    def cached_swarm(self, session_id: str) -> list[Snode] | None:
        entry = self._swarms.get(session_id)
        return list(entry.members) if entry else None

    def set_cached_swarm(self, session_id: str, members: Sequence[Snode], swarm_id: int | None = None,
                         reported: Sequence[Snode] | None = None) -> None:
        """Put a swarm in the cache (tests use this to plant a stale swarm)."""
        self._swarms[session_id] = SwarmEntry(swarm_id, list(members), time.monotonic(), len(members),
                                               list(reported if reported is not None else members))

    # -- records ------------------------------------------------------------------------------
    def _start(self, record: OperationRecord) -> _Op:
        record.account = record.account or self.session_id
        return _Op(record)

    def _finish(self, op: _Op, error: BaseException | None = None) -> OperationRecord:
        rec = op.record
        rec.ended_at = time.time()
        rec.clock_offset_ms = self.clock.offset_ms
        if error is None:
            rec.outcome = OUTCOME_OK
        else:
            rec.outcome = OUTCOME_ERROR
            rec.error = str(error)
            rec.error_type = type(error).__name__
        emit(self.sink, rec)
        return rec

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

    async def _refresh_pool(self, op: _Op) -> None:
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

    async def _refresh_from_nodes(self, op: _Op, seed_error: BootstrapError) -> None:
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
                                                  _Target(self, fixed=node), validate=validate)
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

    async def _refresh_from_seeds(self, op: _Op) -> None:
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

    async def _ensure_ready(self, op: _Op) -> None:
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
    async def _ensure_paths(self, op: _Op) -> None:
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

    async def _build_paths(self, op: _Op, *, may_refresh: bool) -> bool:
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

    def _fresh_path_around(self, op: _Op, dest: Snode) -> OnionPath | None:
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

    async def _test_guard(self, op: _Op, guard: Snode) -> bool:
        """session-desktop testGuardNode: a direct storage RPC must answer 200."""
        url = f"{guard.url}/storage_rpc/v1"
        a = op.attempt("guard_test", None, guard.ref(), None)
        t0 = time.monotonic()
        try:
            res = await self._transport.post(url, json.dumps({"method": "info", "params": {}}).encode(),
                                             timeout=self.config.guard_test_timeout,
                                             content_type="application/json")
        except TransportError as exc:
            a.elapsed_ms = (time.monotonic() - t0) * 1000
            a.error_kind, a.error = ErrorKind(exc.kind).value, f"guard candidate {guard} unreachable: {exc.detail}"
            a.failed_node = guard.ref()
            self.policy.mark_unreachable(guard)
            self.policy.strike_node(guard, "guard test failed", a)
            return False
        a.elapsed_ms = (time.monotonic() - t0) * 1000
        a.http_status = res.status
        if res.status != 200:
            a.error_kind, a.error = ErrorKind.DESTINATION.value, f"guard candidate {guard} answered {res.status}: {res.text()[:200]!r}"
            a.failed_node = guard.ref()
            self.policy.strike_node(guard, "guard test failed", a)
            return False
        self._observe_time(guard, res.body)
        a.ok = True
        return True

    def _observe_time(self, node: Snode, body: bytes | str | dict[str, Any]) -> None:
        data: Any = body
        if not isinstance(body, dict):
            try:
                data = json.loads(body)
            except (ValueError, TypeError):
                return
        if isinstance(data, dict):
            t = data.get("t", data.get("timestamp"))
            self.clock.observe(node.ed25519, t)

    # -- one onion request ----------------------------------------------------------------------
    async def _attempt(self, op: _Op, *, method: str, params: dict[str, Any], dest: Snode,
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
        op: _Op,
        method: str,
        make_params: Callable[[Snode], dict[str, Any]],
        target: _Target,
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
                        # the node is gone from the pool, the swarm caches and the paths: the
                        # paths and hops that failed with it are not suspect any more
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

    async def _resync_clock(self, op: _Op, dest: Snode, path: OnionPath, enc: str) -> None:
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

    # -- swarms -------------------------------------------------------------------------------
    async def get_swarm(self, session_id: str, *, refresh: bool = False,
                        enc_type: str | None = None) -> list[Snode]:
        """The swarm of an account (cached; ``refresh`` forces a network lookup)."""
        try:
            SessionID.parse(session_id)
        except ValueError as exc:
            raise SwarmError(f"cannot look up the swarm of {session_id!r}: {exc}") from None
        op = self._start(OperationRecord(op_id=new_op_id("get_swarm"), kind="get_swarm",
                                         recipient=session_id, enc_type=enc_type or self.config.enc_type))
        try:
            members = await self._swarm_members(session_id, op, refresh=refresh, enc_type=enc_type)
        except ClientError as exc:
            failure = SwarmError(f"cannot find the swarm of {session_id}: {exc}", record=op.record)
            op.record.details["cause"] = type(exc).__name__
            self._finish(op, failure)
            raise failure from exc
        entry = self._swarms.get(session_id)
        op.record.details = {"swarm_id": entry.swarm_id if entry else None,
                             "members": [m.ref() for m in members]}
        self._finish(op)
        return members

    async def _swarm_members(self, session_id: str, op: _Op, *, refresh: bool,
                             enc_type: str | None = None) -> list[Snode]:
        entry = self._swarms.get(session_id)
        if entry is not None and not refresh:
            fresh = time.monotonic() - entry.fetched_at < self.config.swarm_cache_ttl
            # session-desktop refetches when fewer than min(3, swarm size) members are left
            if fresh and entry.members and len(entry.members) >= min(3, entry.fetched_size):
                return list(entry.members)
        target = _Target(self)

        def validate(dest: Snode, data: dict[str, Any], a: AttemptRecord) -> None:
            _, members = parse_swarm_body(data)
            if not members:
                raise DestinationError(dest, 200, json.dumps(data)[:200], method=GET_SWARM_METHOD,
                                       detail="get_swarm answer lists no usable node")

        _, data, _ = await self._call(op, GET_SWARM_METHOD, lambda _d: {"pubKey": session_id}, target,
                                      enc_type=enc_type, validate=validate)
        swarm_id, members = parse_swarm_body(data)
        usable = [m for m in members if m.ed25519 not in self.pool.dropped] or members
        for m in usable:
            self.pool.add(m)
        self.set_cached_swarm(session_id, usable, swarm_id, members)
        op.record.attempts[-1].actions.append(f"swarm_cached:{len(usable)}")
        return list(usable)

    # -- send ---------------------------------------------------------------------------------
    def _required_confirmations(self, swarm_size: int) -> int:
        if self.config.store_confirmations is not None:
            return self.config.store_confirmations
        return swarm_size // 2 + 1

    # -- attachments (harness.client.attachments) -----------------------------------------------
    def _file_server(self, server: att.FileServer | None) -> att.FileServer:
        chosen = server or self.file_server
        if chosen is None:
            raise att.FileServerError("no file server known: give file_server= to the client "
                                      "(Testnet.file_server, or the testnet's state)")
        return chosen

    async def upload_attachment(self, data: bytes, *, file_name: str | None = None,
                                content_type: str | None = None,
                                server: att.FileServer | None = None) -> AttachmentRef:
        """Encrypt and upload an attachment through an onion path; the pointer to send.

        Raises :class:`~harness.client.attachments.FileServerError` (with ``.record``)."""
        ref, _rec = await att.upload(self, self._file_server(server), data, file_name=file_name,
                                     content_type=content_type)
        return ref

    async def download_attachment(self, ref: AttachmentRef, *,
                                  server: att.FileServer | None = None) -> bytes:
        """Download, verify (MAC, digest) and decrypt a received attachment."""
        data, _rec = await att.download(self, self._file_server(server), ref)
        return data

    async def send(self, to: str, body: str, *, enc_type: str | None = None,
                   display_name: str | None = None, ttl_ms: int | None = None,
                   attachments: Sequence[AttachmentRef] = ()) -> SendRecord:
        """Send a Session 1-to-1 message; returns the record once the swarm stored it.

        ``attachments``: pointers of uploaded attachments (:meth:`upload_attachment`), carried
        as the DataMessage's ``AttachmentPointer``s.

        Raises :class:`StoreFailed` (with ``.record``) if no attempt got the message stored.
        """
        enc = parse_enc_type(enc_type or self.config.enc_type)
        ttl = ttl_ms if ttl_ms is not None else self.config.message_ttl_ms
        rec = SendRecord(op_id=new_op_id("send"), kind="send", recipient=to, enc_type=enc,
                         namespace=0, ttl_ms=ttl)
        if attachments:
            rec.details["attachments"] = [att.ref_summary(r) for r in attachments]
        op = self._start(rec)
        try:
            try:
                sid = SessionID.parse(to)
            except ValueError as exc:
                raise StoreFailed(f"cannot send to {to!r}: {exc}") from None
            if sid.prefix != PREFIX_X25519:
                raise StoreFailed(f"cannot send to {to}: 1-to-1 messages need a 05 Session ID")
            await self._ensure_ready(op)
            built: dict[str, Any] = {}

            def params(_dest: Snode) -> dict[str, Any]:
                # build once; rebuild only after the network rejected our timestamp (406/425)
                # and the clock was re-read. The store timestamp and the message timestamp are
                # the same network time. Every other retry stores the very same message (same
                # hash): a member that already stored it answers "already", no duplicate appears
                if built.get("resyncs") != op.clock_resyncs:
                    ts = self.clock.now_ms()
                    try:
                        data = encrypt_message(self.identity, sid, body, timestamp_ms=ts,
                                               display_name=display_name, attachments=attachments)
                    except MessageError as exc:
                        raise StoreFailed(f"cannot build the message for {to}: {exc}") from exc
                    if "resyncs" in built:
                        rec.details.setdefault("rebuilt_for_clock", 0)
                        rec.details["rebuilt_for_clock"] += 1
                    built.update(resyncs=op.clock_resyncs, params={
                        "pubkey": to, "ttl": ttl, "timestamp": ts,
                        "data": base64.b64encode(data).decode("ascii"), "namespace": 0})
                    rec.message_hash, rec.timestamp_ms = message_hash(sid, 0, data), ts
                    rec.details["data_bytes"] = len(data)
                stored: dict[str, Any] = built["params"]
                return stored

            params(None)  # type: ignore[arg-type]  # build now: a bad message fails before any request
            target = _Target(self, pubkey=to, enc_type=enc)

            def verify(dest: Snode, resp: dict[str, Any], a: AttemptRecord) -> None:
                assert rec.message_hash is not None
                self._verify_store(rec, dest, resp, rec.message_hash, target.members, a)

            dest, _resp, path = await self._call(op, "store", params, target, enc_type=enc,
                                                 validate=verify if self.config.verify_store else None)
            rec.destination, rec.path = dest.ref(), path.refs()
        except ClientError as exc:
            if isinstance(exc, StoreFailed):
                exc.record = rec
                self._finish(op, exc)
                raise
            failure = StoreFailed(f"message to {to} not stored after {len(rec.attempts)} attempt(s): {exc}",
                                  record=rec)
            rec.details["cause"] = type(exc).__name__
            self._finish(op, failure)
            raise failure from exc
        self._finish(op)
        return rec

    def _verify_store(self, rec: SendRecord, dest: Snode, resp: dict[str, Any], expected_hash: str,
                      members: list[Snode], a: AttemptRecord) -> None:
        """Check the per-member results of a store: each member signs the message hash."""
        cached = self._swarms.get(rec.recipient or "")
        reported = cached.reported if cached is not None else []
        known = {m.ed25519 for m in members} | {m.ed25519 for m in reported} | {dest.ed25519}
        swarm = resp.get("swarm")
        results: dict[str, dict[str, Any]] = {}
        confirmations = 0
        if isinstance(swarm, dict):
            for ed, r in swarm.items():
                entry: dict[str, Any] = {"ok": False, "reason": None, "already": False}
                if not isinstance(r, dict):
                    entry["reason"] = "malformed result"
                elif r.get("failed"):
                    entry["reason"] = "timeout" if r.get("timeout") else f"code {r.get('code')}: {r.get('reason')}"
                elif r.get("hash") != expected_hash:
                    entry["reason"] = f"hash mismatch: {r.get('hash')!r}"
                else:
                    entry["already"] = bool(r.get("already"))
                    sig = r.get("signature")
                    ok = False
                    if isinstance(sig, str):
                        try:
                            ok = verify_ed25519(bytes.fromhex(ed), expected_hash.encode("ascii"), b64decode_any(sig.strip()))
                        except (ValueError, binascii.Error):
                            ok = False
                    if not ok:
                        entry["reason"] = "bad or missing signature"
                    elif ed not in known:
                        entry["reason"] = "not a known member of the swarm"
                    else:
                        entry["ok"] = True
                        confirmations += 1
                results[ed] = entry
        rec.swarm_results = results
        rec.confirmations = confirmations
        required = self._required_confirmations(len(known))
        rec.details["required_confirmations"] = required
        a.actions.append(f"confirmations:{confirmations}/{required}")
        if confirmations < required:
            missing = sorted(m.ed25519[-8:] for m in members if not results.get(m.ed25519, {}).get("ok"))
            raise StoreUnconfirmed(dest, 200, "", method="store",
                                   detail=f"{confirmations} of {required} required swarm members confirmed "
                                          f"hash {expected_hash} (unconfirmed: {missing})")

    # -- receive ------------------------------------------------------------------------------
    async def receive(self, *, namespaces: Sequence[int] | None = None, poll: str | None = None,
                      enc_type: str | None = None) -> list[Received]:
        """Poll the own swarm once; returns messages not returned before (oldest first)."""
        enc = parse_enc_type(enc_type or self.config.enc_type)
        nss = list(namespaces) if namespaces is not None else list(self.config.namespaces)
        mode = poll or self.config.poll_mode
        rec = ReceiveRecord(op_id=new_op_id("receive"), kind="receive", recipient=self.session_id,
                            enc_type=enc, namespaces=nss)
        op = self._start(rec)
        out: list[Received] = []
        try:
            await self._ensure_ready(op)
            if mode == POLL_ALL:
                members = await self._swarm_members(self.session_id, op, refresh=False, enc_type=enc)
                errors: list[ClientError] = []
                for m in members:
                    try:
                        out.extend(await self._poll_node(
                            op, _Target(self, pubkey=self.session_id, fixed=m, enc_type=enc), nss, enc))
                    except ClientError as exc:
                        errors.append(exc)
                if errors and len(errors) == len(members):
                    raise errors[-1]
            elif mode == POLL_SAMPLE:
                # session-desktop pollOnceForKey: sampleSize(swarm, RETRIEVE_SNODES_COUNT) polled
                # at once, results merged ("it's easy for a snode to be out of sync"); each node
                # with its own last hash; the poll fails only if every sampled node failed
                members = self.policy.prefer_reachable(
                    await self._swarm_members(self.session_id, op, refresh=False, enc_type=enc))
                sample = self._rng.sample(members, min(RETRIEVE_SNODES_COUNT, len(members)))
                results = await asyncio.gather(*(self._poll_node(
                    op, _Target(self, pubkey=self.session_id, fixed=m, enc_type=enc), nss, enc)
                    for m in sample), return_exceptions=True)
                failures = [r for r in results if isinstance(r, BaseException)]
                for r in results:
                    if not isinstance(r, BaseException):
                        out.extend(r)
                for f in failures:
                    if not isinstance(f, ClientError):
                        raise f
                if failures and len(failures) == len(results):
                    raise failures[-1]
            else:
                def prefer(cands: list[Snode]) -> list[Snode]:
                    # session-desktop polls one node, preferably one it already has a last hash for
                    return [c for c in cands if any((c.ed25519, ns) in self._last_hash for ns in nss)]

                target = _Target(self, pubkey=self.session_id, prefer=prefer, enc_type=enc)
                out.extend(await self._poll_node(op, target, nss, enc))
        except ClientError as exc:
            failure = RetrieveFailed(f"cannot retrieve messages of {self.session_id}: {exc}", record=rec)
            rec.details["cause"] = type(exc).__name__
            self._finish(op, failure)
            raise failure from exc
        out.sort(key=lambda m: m.timestamp_ms)  # stable: equal timestamps keep storage order
        self._finish(op)
        return out

    async def _poll_node(self, op: _Op, target: _Target, namespaces: list[int], enc: str) -> list[Received]:
        rec = op.record
        assert isinstance(rec, ReceiveRecord)
        found: list[Received] = []
        for ns in namespaces:
            for _page in range(self.config.max_retrieve_pages):
                holder: dict[str, str] = {}

                def params(dest: Snode, ns: int = ns, holder: dict[str, str] = holder) -> dict[str, Any]:
                    ts = self.clock.now_ms()
                    last = self._last_hash.get((dest.ed25519, ns), "")
                    holder["last"] = last
                    return {
                        "pubkey": self.session_id, "namespace": ns, "last_hash": last, "timestamp": ts,
                        "signature": sign_request(self.identity, retrieve_message(ns, ts)),
                        "pubkey_ed25519": self.identity.ed25519_hex,
                    }

                try:
                    dest, data, _path = await self._call(op, "retrieve", params, target, enc_type=enc)
                except ClientError as exc:
                    if not rec.polled:
                        raise
                    # a later page / namespace failed: keep what was already accepted (those
                    # hashes are marked seen and would otherwise be lost)
                    rec.details.setdefault("partial_errors", []).append(str(exc))
                    return found
                target = _Target(self, pubkey=self.session_id, fixed=dest, enc_type=enc)  # pages / namespaces: same node
                msgs = data.get("messages")
                if not isinstance(msgs, list):
                    msgs = []
                poll = {**dest.ref(), "namespace": ns, "last_hash_before": holder.get("last", ""),
                        "count": len(msgs)}
                for m in msgs:
                    item = self._accept(rec, dest, ns, m)
                    if item is not None:
                        found.append(item)
                hashes: list[str] = [m["hash"] for m in msgs if isinstance(m, dict) and isinstance(m.get("hash"), str)]
                if hashes:
                    self._last_hash[(dest.ed25519, ns)] = hashes[-1]
                poll["last_hash_after"] = self._last_hash.get((dest.ed25519, ns), "")
                rec.polled.append(poll)
                if rec.destination is None:
                    rec.destination = dest.ref()
                    rec.path = _path.refs()
                if not (data.get("more") and hashes):
                    break
        return found

    def _accept(self, rec: ReceiveRecord, dest: Snode, ns: int, m: Any) -> Received | None:
        if not isinstance(m, dict) or not isinstance(m.get("hash"), str) or not isinstance(m.get("data"), str):
            rec.undecryptable.append({"hash": str(m.get("hash") if isinstance(m, dict) else None),
                                      "error": "malformed message entry"})
            return None
        h = m["hash"]
        if h in self._seen:
            rec.duplicate_hashes.append(h)
            return None
        self._seen.add(h)
        rec.new_hashes.append(h)
        try:
            raw = b64decode_any(m["data"].strip())
        except (ValueError, binascii.Error):
            rec.undecryptable.append({"hash": h, "error": "data is not base64"})
            return None
        if message_hash(self.session_id, ns, raw) != h:
            rec.undecryptable.append({"hash": h, "error": "hash does not match the data"})
            return None
        try:
            msg = decrypt_message(self.identity, raw)
        except MessageError as exc:
            rec.undecryptable.append({"hash": h, "error": str(exc)})
            return None
        exp = m.get("expiration")
        return Received(sender=msg.sender, body=msg.body, hash=h, timestamp_ms=msg.timestamp_ms,
                        envelope_timestamp_ms=msg.envelope_timestamp_ms, display_name=msg.display_name,
                        namespace=ns, expiration_ms=exp if isinstance(exp, int) else None,
                        node=dest.ed25519, attachments=msg.attachments)

    async def wait_for(self, predicate: Callable[[list[Received]], bool] | None = None, *,
                       count: int | None = None, timeout: float = 30.0,
                       poll_interval: float | None = None) -> list[Received]:
        """Poll until ``predicate(messages so far)`` holds or ``count`` messages arrived.

        Without either, waits for one message.  Transient retrieve errors are retried until the
        deadline.  Raises :class:`Timeout` naming what arrived and the last error.
        """
        if predicate is None and count is None:
            count = 1
        interval = poll_interval if poll_interval is not None else self.config.poll_interval
        deadline = time.monotonic() + timeout
        got: list[Received] = []
        last_error: ClientError | None = None
        polls = 0
        while True:
            polls += 1
            try:
                got.extend(await self.receive())
                last_error = None
            except RetrieveFailed as exc:
                last_error = exc
            if (count is not None and len(got) >= count) or (predicate is not None and predicate(got)):
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                want = f"{count} message(s)" if count is not None else "the expected messages"
                msg = (f"{self.session_id}: waited {timeout:g}s ({polls} polls) for {want}; got {len(got)}: "
                       f"{[(r.sender[-8:], r.body[:40]) for r in got]}")
                if last_error is not None:
                    msg += f"; last error: {last_error}"
                raise Timeout(msg)
            await asyncio.sleep(min(interval, remaining))
