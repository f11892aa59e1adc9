"""The adapter side of the protocol, for adapters written in Python on top of the harness: read
requests from stdin, hand them to a :class:`Handler`, write one answer line per request.

Ordering rules enforced here: ``start`` first (once), then ``account_new`` (once), then any
number of ``send`` / ``recv``, then ``close`` (answered, then the loop returns). End of input
also ends the loop (the handler is closed).
"""

from __future__ import annotations

import time
from typing import IO, Any, Protocol

from harness.adapter.protocol import (
    OP_ACCOUNT_NEW,
    OP_CLOSE,
    OP_RECV,
    OP_SEND,
    OP_START,
    PROTOCOL_VERSION,
    ProtocolViolation,
    Request,
    decode_line,
    encode,
    parse_request,
    request_id,
)


class Handler(Protocol):
    """What an adapter does for each op; answers are dicts without ``id`` (``ok`` is added when
    missing). Raising an exception answers ``ok: false`` with its text."""

    name: str
    version: str | None

    def start(self, seed_url: str, nodes: list[dict[str, Any]], testnet: dict[str, Any]) -> None: ...

    def account_new(self, seed_hex: str | None) -> str: ...

    def send(self, to: str, body: str) -> dict[str, Any]: ...

    def recv(self, timeout: float) -> dict[str, Any]: ...

    def close(self) -> None: ...


class OpFailed(Exception):
    """An op failed; ``fields`` go into the ``ok: false`` answer (hash, attempts, times, …)."""

    def __init__(self, error: str, **fields: Any) -> None:
        super().__init__(error)
        self.fields = fields


class Session:
    """One adapter's protocol state over a :class:`Handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.started = False
        self.account: str | None = None
        self.closed = False

    def answer(self, line: str | bytes) -> dict[str, Any]:
        """The answer object to one request line."""
        obj: Any = None
        try:
            obj = decode_line(line)
            req = parse_request(obj)
        except ProtocolViolation as e:
            return {"id": request_id(obj), "ok": False, "error": f"malformed request: {e}",
                    "error_type": "ProtocolViolation"}
        try:
            out = self._dispatch(req)
        except OpFailed as e:
            return {"id": req.id, **e.fields, "ok": False, "error": str(e) or type(e).__name__,
                    "error_type": e.fields.get("error_type", type(e).__name__)}
        except Exception as e:  # any failure of the client is an answer, never a crash
            return {"id": req.id, "ok": False, "error": str(e) or type(e).__name__,
                    "error_type": type(e).__name__}
        return {"id": req.id, "ok": True, **out}

    def _dispatch(self, req: Request) -> dict[str, Any]:
        f = req.fields
        if req.op == OP_START:
            if self.started:
                raise ValueError("start was already received")
            if f["protocol"] != PROTOCOL_VERSION:
                raise ValueError(f"this adapter speaks protocol {PROTOCOL_VERSION}, not {f['protocol']}")
            self.handler.start(f["seed_url"], f["nodes"], f["testnet"])
            self.started = True
            return {"protocol": PROTOCOL_VERSION, "adapter": self.handler.name,
                    "version": self.handler.version}
        if req.op == OP_CLOSE:
            self.close()
            return {}
        if not self.started:
            raise ValueError(f"{req.op} before start")
        if req.op == OP_ACCOUNT_NEW:
            if self.account is not None:
                raise ValueError(f"this adapter already has an account ({self.account}); one "
                                 "adapter process is one account")
            self.account = self.handler.account_new(f["seed"])
            return {"session_id": self.account}
        if self.account is None:
            raise ValueError(f"{req.op} before account_new")
        if req.op == OP_SEND:
            return self.handler.send(f["to"], f["body"])
        assert req.op == OP_RECV
        return self.handler.recv(f["timeout"])

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.handler.close()


def serve(handler: Handler, inp: IO[str], out: IO[str]) -> int:
    """Answer requests from ``inp`` on ``out`` until ``close`` or end of input; exit status 0."""
    session = Session(handler)
    try:
        for line in inp:
            if not line.strip():
                continue
            answer = session.answer(line)
            out.write(encode(answer))
            out.flush()
            if session.closed:
                break
    finally:
        session.close()
    return 0


def now() -> float:
    """Unix time, seconds (the ``started_at`` / ``ended_at`` of answers)."""
    return time.time()


__all__ = ["Handler", "OpFailed", "Session", "now", "serve"]
