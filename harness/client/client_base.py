"""The state every part of :class:`~harness.client.client.SessionClient` shares, and the
bookkeeping of one operation.

:class:`ClientBase` holds what the client knows (account, settings, node pool, onion paths, swarm
cache, network clock, path policy, failure classification, last hashes and seen messages), opens
and closes the transport, and starts and finishes operation records.  The client's behaviour is
in its subclasses, each in its own module:

* :mod:`harness.client.onion_requests` — one storage RPC through an onion path, with retries;
* :mod:`harness.client.upkeep` — bootstrap, node pool refreshes, onion path building;
* :mod:`harness.client.receiving` — polling the own swarm;
* :mod:`harness.client.client` — :class:`~harness.client.client.SessionClient`: swarms, send,
  attachments.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

from nodes.protocol.keys import Identity

from . import attachments as att
from .account import Account
from .clock import NetworkClock
from .config import ClientConfig
from .failures import FailureClassifier
from .paths import OnionPath, PathSet
from .policy import PathPolicy
from .pool import NodePool
from .records import (
    OUTCOME_ERROR,
    OUTCOME_OK,
    AttemptRecord,
    OperationRecord,
    RecordSink,
    emit,
)
from .snode import Snode, SwarmEntry
from .transport import AiohttpTransport, Transport


class Operation:
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


class ClientBase:
    """The shared state of a Session client bound to one account (constructor arguments: see
    :class:`~harness.client.client.SessionClient`)."""

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
    async def __aenter__(self) -> Self:
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
    def _start(self, record: OperationRecord) -> Operation:
        record.account = record.account or self.session_id
        return Operation(record)

    def _finish(self, op: Operation, error: BaseException | None = None) -> OperationRecord:
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

    # -- network time ---------------------------------------------------------------------------
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
