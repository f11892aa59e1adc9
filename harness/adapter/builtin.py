"""Adapter zero: the built-in client (:mod:`harness.client`) behind the adapter protocol, run by
``testnet client-adapter``. Sends and receives exactly as scenarios' built-in clients do
(onion paths, swarm confirmations, retries); answers carry the operation record's essentials."""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

from harness.adapter.serve import OpFailed, now
from harness.client import (
    Account,
    Client,
    ClientError,
    Received,
    ReceiveRecord,
    RetrieveFailed,
    StoreFailed,
)

NAME = "session-testnet built-in client"


def _version() -> str | None:
    try:
        return metadata.version("session-testnet")
    except metadata.PackageNotFoundError:
        return None


def attempt_dict(a: Any) -> dict[str, Any]:
    """What an answer keeps of an :class:`harness.client.AttemptRecord`."""
    return {k: getattr(a, k) for k in ("n", "method", "path", "destination", "started_at",
                                      "elapsed_ms", "http_status", "status", "ok", "error_kind",
                                      "error")}


def message_dict(m: Received) -> dict[str, Any]:
    return {"sender": m.sender, "body": m.body, "hash": m.hash, "timestamp": m.timestamp_ms,
            "namespace": m.namespace, "node": m.node}


class BuiltinHandler:
    """:class:`harness.adapter.serve.Handler` over the blocking :class:`harness.client.Client`;
    ``settings`` are :class:`harness.client.ClientConfig` overrides."""

    name = NAME

    def __init__(self, **settings: Any) -> None:
        self.version = _version()
        self.settings = settings
        self.seed_url: str | None = None
        self.client: Client | None = None
        #: the client's operation records (receive records give polled nodes, undecryptables)
        self.records: list[Any] = []

    def start(self, seed_url: str, nodes: list[dict[str, Any]], testnet: dict[str, Any]) -> None:
        self.seed_url = seed_url

    def account_new(self, seed_hex: str | None) -> str:
        assert self.seed_url is not None
        account = Account.from_seed_hex(seed_hex) if seed_hex else Account.generate()
        self.client = Client(self.seed_url, account, sink=self.records, **self.settings)
        return self.client.session_id

    def _client(self) -> Client:
        assert self.client is not None
        return self.client

    def send(self, to: str, body: str) -> dict[str, Any]:
        try:
            rec = self._client().send(to, body)
        except StoreFailed as e:
            self.records.clear()
            r = e.record
            fields: dict[str, Any] = {"started_at": now(), "ended_at": now()}
            if r is not None:
                fields = {"started_at": r.started_at, "ended_at": r.ended_at,
                          "hash": getattr(r, "message_hash", None),
                          "timestamp": getattr(r, "timestamp_ms", None),
                          "attempts": [attempt_dict(a) for a in r.attempts]}
            raise OpFailed(str(e), error_type=type(e).__name__, **fields) from None
        self.records.clear()
        return {"hash": rec.message_hash, "timestamp": rec.timestamp_ms,
                "started_at": rec.started_at, "ended_at": rec.ended_at,
                "destination": rec.destination, "confirmations": rec.confirmations,
                "attempts": [attempt_dict(a) for a in rec.attempts]}

    def recv(self, timeout: float) -> dict[str, Any]:
        """Poll the own swarm until a new message arrives or ``timeout`` passes (0: one poll).
        ``ok`` when at least one poll succeeded."""
        client = self._client()
        started = now()
        deadline = time.monotonic() + timeout
        interval = client.config.poll_interval
        succeeded = False
        last_error: ClientError | None = None
        while True:
            try:
                got = client.receive()
                succeeded = True
            except RetrieveFailed as e:
                got, last_error = [], e
            if got or time.monotonic() >= deadline:
                break
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        reads = [r for r in self.records if isinstance(r, ReceiveRecord)]
        self.records.clear()
        extra = {"undecryptable": [u for r in reads for u in r.undecryptable],
                 "polled": [p for r in reads for p in r.polled]}
        if not succeeded:
            assert last_error is not None
            raise OpFailed(str(last_error), error_type=type(last_error).__name__,
                           started_at=started, ended_at=now(), **extra)
        return {"messages": [message_dict(m) for m in got], "started_at": started,
                "ended_at": now(), **extra}

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


__all__ = ["NAME", "BuiltinHandler", "attempt_dict", "message_dict"]
