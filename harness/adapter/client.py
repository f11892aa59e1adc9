"""The harness side of a client under test: :class:`AdapterClient` runs an adapter command and
records every operation into a scenario's history as :class:`harness.recording.RecordedClient`
does for the built-in client, so the checkers read both alike.

    c = AdapterClient.start("testnet client-adapter", net, history, seed_hex=seed)
    c.send(other.session_id, "hi")          # raises StoreFailed when the adapter says ok: false
    msgs = c.wait_for(count=1, timeout=20)  # [AdapterMessage(sender, body, hash, …)]
    c.close()                               # the adapter's process group is always killed
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from harness.adapter.errors import AdapterError, AdapterProtocolError, AdapterStartError
from harness.adapter.process import AdapterProcess
from harness.adapter.protocol import (
    OP_ACCOUNT_NEW,
    OP_CLOSE,
    OP_RECV,
    OP_SEND,
    AdapterMessage,
    Hello,
    ProtocolViolation,
    RecvResult,
    SendResult,
    parse_account,
    start_request,
)
from harness.client.account import Account
from harness.client.errors import RetrieveFailed, StoreFailed, Timeout
from harness.client.records import (
    OUTCOME_ERROR,
    OUTCOME_OK,
    AttemptRecord,
    ReceiveRecord,
    SendRecord,
    new_op_id,
)
from harness.recording import HistoryRecorder, local_address_towards

T = TypeVar("T")

#: seconds an adapter may take for ``start`` and ``account_new`` (may include its bootstrap)
START_TIMEOUT = 60.0
#: seconds an adapter may take for one ``send`` (its own retries included)
SEND_TIMEOUT = 120.0
#: seconds an adapter may take beyond the ``timeout`` a ``recv`` asked for
RECV_GRACE = 60.0
#: the longest ``recv`` timeout ``wait_for`` asks for (reads are recorded per answer)
RECV_SLICE = 10.0
#: seconds an adapter gets to answer ``close`` and exit before it is killed
CLOSE_TIMEOUT = 10.0


class AdapterClient:
    """A client under test behind the adapter protocol (docs/client-adapter.md), recording into a
    :class:`HistoryRecorder`. Build it with :meth:`start`."""

    def __init__(self, process: AdapterProcess, history: HistoryRecorder, hello: Hello,
                 session_id: str, *, send_timeout: float = SEND_TIMEOUT,
                 recv_grace: float = RECV_GRACE) -> None:
        self.process = process
        self.recorder = history
        self.hello = hello
        self._session_id = session_id
        self.send_timeout = send_timeout
        self.recv_grace = recv_grace
        self.closed = False

    @classmethod
    def start(cls, cmd: str | Sequence[str], net: Any, history: HistoryRecorder, *,
              seed_hex: str | None = None, start_timeout: float = START_TIMEOUT,
              send_timeout: float = SEND_TIMEOUT, recv_grace: float = RECV_GRACE,
              env: dict[str, str] | None = None) -> AdapterClient:
        """Run ``cmd`` (split like a shell would, never through one), send it ``start`` with
        ``net``'s seed URL and node list, then ``account_new`` with ``seed_hex`` (the account's
        Ed25519 seed, so accounts follow from the testnet seed; None: the adapter picks one).
        The account seed travels on the adapter's stdin, never on its command line."""
        history.attach(net, clear=net not in history.nets)
        nodes = net.nodes
        if nodes:
            addr = local_address_towards(nodes[0].public_ip, nodes[0].storage_port)
            if addr not in history.history.client_addresses:
                history.history.client_addresses.append(addr)
        process = AdapterProcess(cmd, env=env)
        try:
            answer = process.request(start_request(net), start_timeout)
            if not answer["ok"]:
                raise process.error(AdapterStartError, f"start refused: {answer['error']}")
            hello = _parse(process, Hello.from_answer, answer)
            answer = process.request({"op": OP_ACCOUNT_NEW, "seed": seed_hex}, start_timeout)
            if not answer["ok"]:
                raise process.error(AdapterStartError, f"account_new refused: {answer['error']}")
            session_id = _parse(process, parse_account, answer)
        except BaseException:
            process.kill("start failed")
            raise
        if seed_hex is not None:
            _check_account(process, seed_hex, session_id)
        return cls(process, history, hello, session_id, send_timeout=send_timeout,
                   recv_grace=recv_grace)

    # -- identity ---------------------------------------------------------------------------------
    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def command(self) -> str:
        return self.process.command

    def _details(self) -> dict[str, Any]:
        d: dict[str, Any] = {"adapter": self.hello.adapter, "adapter_command": self.command}
        if self.hello.version:
            d["adapter_version"] = self.hello.version
        return d

    # -- send -------------------------------------------------------------------------------------
    def send(self, to: str, body: str) -> SendRecord:
        """Send ``body`` to ``to``; the record (also in the history) once the adapter says it was
        stored. Raises :class:`StoreFailed` (``.record``) when the adapter answers ``ok: false``,
        an :class:`AdapterError` when the adapter itself fails."""
        rec = SendRecord(op_id=new_op_id("send"), kind="send", account=self.session_id,
                         recipient=to, namespace=0, details=self._details())
        self.recorder.history.sent[rec.op_id] = {"to": to, "body": body}
        t0 = rec.started_at = time.time()
        try:
            answer = self.process.request({"op": OP_SEND, "to": to, "body": body}, self.send_timeout)
            result = _parse(self.process, SendResult.from_answer, answer)
        except AdapterError as e:
            self._end(rec, t0, time.time(), e)
            e.record = rec
            raise
        rec.started_at, rec.ended_at = result.timing.within(t0, time.time())
        rec.message_hash, rec.timestamp_ms = result.hash, result.timestamp_ms
        rec.destination = result.destination
        rec.confirmations = result.confirmations or 0
        rec.attempts = [_attempt(a, i) for i, a in enumerate(result.attempts, 1)]
        if result.ok:
            rec.outcome = OUTCOME_OK
            self.recorder.history.records.append(rec)
            return rec
        failure = StoreFailed(f"{self.hello.adapter}: message to {to} not stored: {result.error}",
                              record=rec)
        rec.outcome, rec.error = OUTCOME_ERROR, str(failure)
        rec.error_type = result.error_type or "StoreFailed"
        self.recorder.history.records.append(rec)
        raise failure

    def _end(self, rec: SendRecord | ReceiveRecord, start: float, end: float,
             error: BaseException) -> None:
        rec.started_at, rec.ended_at = start, end
        rec.outcome, rec.error, rec.error_type = OUTCOME_ERROR, str(error), type(error).__name__
        self.recorder.history.records.append(rec)

    # -- receive ----------------------------------------------------------------------------------
    def _recv(self, timeout: float) -> list[AdapterMessage]:
        """One ``recv`` (the adapter returns at the first new message or after ``timeout``)."""
        rec = ReceiveRecord(op_id=new_op_id("receive"), kind="receive", account=self.session_id,
                            recipient=self.session_id, namespaces=[0], details=self._details())
        rec.details["timeout"] = timeout
        t0 = time.time()
        try:
            answer = self.process.request({"op": OP_RECV, "timeout": timeout},
                                          timeout + self.recv_grace)
            result = _parse(self.process, RecvResult.from_answer, answer)
        except AdapterError as e:
            self._end(rec, t0, time.time(), e)
            e.record = rec
            raise
        at = time.time()
        rec.started_at, rec.ended_at = result.timing.within(t0, at)
        rec.polled = result.polled
        rec.undecryptable = result.undecryptable
        if not result.ok:
            rec.outcome, rec.error = OUTCOME_ERROR, result.error
            rec.error_type = result.error_type or "RetrieveFailed"
            self.recorder.history.records.append(rec)
            raise RetrieveFailed(f"{self.hello.adapter}: cannot retrieve messages of "
                              f"{self.session_id}: {result.error}", record=rec)
        rec.outcome = OUTCOME_OK
        # every hash the adapter hands back counts: one handed back twice is a duplicate the
        # application saw, which the delivery check must see too
        rec.new_hashes = [m.hash for m in result.messages]
        self.recorder.history.records.append(rec)
        for m in result.messages:
            self.recorder.history.deliveries.append({"account": self.session_id, **m.to_dict(),
                                                     "at": at})
        return result.messages

    def receive(self) -> list[AdapterMessage]:
        """One poll: the messages not returned before (``recv`` with timeout 0). Raises
        :class:`RetrieveFailed` when the adapter answers ``ok: false``."""
        return self._recv(0.0)

    def wait_for(self, predicate: Callable[[list[AdapterMessage]], bool] | None = None, *,
                 count: int | None = None, timeout: float = 30.0) -> list[AdapterMessage]:
        """``recv`` until ``predicate(messages so far)`` holds or ``count`` messages arrived
        (neither: one message). A failed ``recv`` is retried until the deadline; then
        :class:`harness.client.Timeout` says what arrived and the last error."""
        if predicate is None and count is None:
            count = 1
        deadline = time.monotonic() + timeout
        got: list[AdapterMessage] = []
        last_error: str | None = None
        polls = 0
        while True:
            polls += 1
            remaining = max(0.0, deadline - time.monotonic())
            try:
                got.extend(self._recv(min(remaining, RECV_SLICE)))
                last_error = None
            except RetrieveFailed as e:
                last_error = str(e)
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            if (count is not None and len(got) >= count) or (predicate is not None and predicate(got)):
                return got
            if time.monotonic() >= deadline:
                want = f"{count} message(s)" if count is not None else "the expected messages"
                msg = (f"{self.session_id} ({self.hello.adapter}): waited {timeout:g}s ({polls} "
                       f"recv) for {want}; got {len(got)}: "
                       f"{[(m.sender[-8:], m.body[:40]) for m in got]}")
                if last_error is not None:
                    msg += f"; last error: {last_error}"
                raise Timeout(msg)

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Ask the adapter to ``close``, give it :data:`CLOSE_TIMEOUT` s to exit, then kill its
        process group whatever happened. Idempotent; an adapter that misbehaves while closing
        raises its :class:`AdapterError` (after being killed)."""
        if self.closed:
            return
        self.closed = True
        error: AdapterError | None = None
        try:
            if self.process.running:
                answer = self.process.request({"op": OP_CLOSE}, CLOSE_TIMEOUT)
                if not answer["ok"]:
                    error = self.process.error(AdapterError, f"close refused: {answer['error']}")
                self.process.close_stdin()
                self.process.wait(CLOSE_TIMEOUT)
        except AdapterError as e:
            error = e
        finally:
            self.process.kill("it was closed")
        if error is not None:
            raise error

    def __enter__(self) -> AdapterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - a forgotten client still kills its adapter
        try:
            if not self.closed:
                self.process.kill("its client was garbage-collected")
        except Exception:  # noqa: S110
            pass

    def __repr__(self) -> str:
        return f"AdapterClient({self.command!r}, session_id={self.session_id!r})"


def _parse(process: AdapterProcess, parse: Callable[[dict[str, Any]], T], answer: dict[str, Any]) -> T:
    try:
        return parse(answer)
    except ProtocolViolation as e:
        process.kill(f"it broke the protocol ({e})")
        raise process.error(AdapterProtocolError, str(e), settle=0.5) from None


def _attempt(data: dict[str, Any], n: int) -> AttemptRecord:
    try:
        a = AttemptRecord.from_dict({"n": n, "method": "store", **data})
    except TypeError:
        return AttemptRecord(n=n, method="store")
    if not isinstance(a.path, list):
        a.path = []
    return a


def _check_account(process: AdapterProcess, seed_hex: str, session_id: str) -> None:
    """The Session ID must be the one of the seed given (else accounts are not reproducible)."""
    want = Account.from_seed_hex(seed_hex).session_id
    if session_id != want:
        process.kill("it made the wrong account")
        raise process.error(AdapterProtocolError, f"account_new with a seed answered Session ID "
                            f"{session_id}, but that seed's Session ID is {want}")


__all__ = ["CLOSE_TIMEOUT", "RECV_GRACE", "RECV_SLICE", "SEND_TIMEOUT", "START_TIMEOUT",
           "AdapterClient"]
