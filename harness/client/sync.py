"""A synchronous facade over :class:`SessionClient` for scripts and plain (non-async) tests.

The client runs on its own event loop in a daemon thread; each method submits a coroutine to that
loop and waits for the result, so it also works when the caller is itself inside a running event
loop (Jupyter, an async test calling sync helpers).

    with Client(seed_url, Account.load("alice.json"), sink=records) as alice:
        alice.send(bob_id, "hi")
        msgs = alice.wait_for(count=1, timeout=20)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from nodes.protocol.keys import Identity
from nodes.protocol.message import AttachmentRef

from .account import Account
from .attachments import FileServer
from .client import SessionClient
from .config import ClientConfig
from .errors import ClientError
from .receiving import Received
from .records import OperationRecord, RecordSink, SendRecord
from .snode import Snode

T = TypeVar("T")


class Client:
    """Blocking version of :class:`SessionClient` (same arguments, same methods)."""

    def __init__(
        self,
        seeds: str | Sequence[str],
        account: Account | Identity | None = None,
        *,
        config: ClientConfig | None = None,
        sink: RecordSink | None = None,
        call_timeout: float | None = 300.0,
        **kwargs: Any,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="session-client-loop", daemon=True)
        self._thread.start()
        self._call_timeout = call_timeout
        self._closed = False

        async def make() -> SessionClient:
            return SessionClient(seeds, account, config=config, sink=sink, **kwargs)

        try:
            self._client = self._submit(make())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _submit(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._closed:
            coro.close()
            raise ClientError("the client is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout if timeout is not None else self._call_timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        try:
            self._submit(self._client.close(), timeout=30)
        finally:
            self._closed = True
            self._stop_loop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort for forgotten clients
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001
            pass

    # -- the SessionClient API ---------------------------------------------------------------
    @property
    def aio(self) -> SessionClient:
        """The underlying asyncio client (only use it from its own loop)."""
        return self._client

    @property
    def session_id(self) -> str:
        return self._client.session_id

    @property
    def account(self) -> Account:
        return self._client.account

    @property
    def config(self) -> ClientConfig:
        return self._client.config

    def bootstrap(self) -> OperationRecord:
        return self._submit(self._client.bootstrap())

    def get_swarm(self, session_id: str, *, refresh: bool = False, enc_type: str | None = None) -> list[Snode]:
        return self._submit(self._client.get_swarm(session_id, refresh=refresh, enc_type=enc_type))

    def send(self, to: str, body: str, *, enc_type: str | None = None, display_name: str | None = None,
             ttl_ms: int | None = None, attachments: Sequence[AttachmentRef] = ()) -> SendRecord:
        return self._submit(self._client.send(to, body, enc_type=enc_type, display_name=display_name,
                                              ttl_ms=ttl_ms, attachments=attachments))

    def upload_attachment(self, data: bytes, *, file_name: str | None = None,
                          content_type: str | None = None,
                          server: FileServer | None = None) -> AttachmentRef:
        return self._submit(self._client.upload_attachment(
            data, file_name=file_name, content_type=content_type, server=server))

    def download_attachment(self, ref: AttachmentRef, *, server: FileServer | None = None) -> bytes:
        return self._submit(self._client.download_attachment(ref, server=server))

    def receive(self, *, namespaces: Sequence[int] | None = None, poll: str | None = None,
                enc_type: str | None = None) -> list[Received]:
        return self._submit(self._client.receive(namespaces=namespaces, poll=poll, enc_type=enc_type))

    def wait_for(self, predicate: Callable[[list[Received]], bool] | None = None, *, count: int | None = None,
                 timeout: float = 30.0, poll_interval: float | None = None) -> list[Received]:
        return self._submit(self._client.wait_for(predicate, count=count, timeout=timeout,
                                                  poll_interval=poll_interval),
                            timeout=timeout + 60)

    def run(self, fn: Callable[[SessionClient], Coroutine[Any, Any, T]]) -> T:
        """Run ``await fn(async_client)`` on the client's loop (for anything not wrapped here)."""
        return self._submit(fn(self._client))
