"""The client adapter protocol (docs/client-adapter.md): JSON lines between the harness and a
client under test. Pure data: building requests, parsing and validating lines and answers. No
processes here (:mod:`harness.adapter.process`), no network.

One line = one JSON object, UTF-8, ``\\n``-terminated. The harness writes requests
``{"id": N, "op": …}`` on the adapter's stdin; the adapter answers each one, in order, with one
line ``{"id": N, "ok": true, …}`` or ``{"id": N, "ok": false, "error": "…"}`` on its stdout.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

#: the protocol version this harness speaks (the ``start`` request and the hello answer carry it)
PROTOCOL_VERSION = 1

OP_START = "start"
OP_ACCOUNT_NEW = "account_new"
OP_SEND = "send"
OP_RECV = "recv"
OP_CLOSE = "close"
OPS = (OP_START, OP_ACCOUNT_NEW, OP_SEND, OP_RECV, OP_CLOSE)

#: longest line either side accepts (a 76,800-byte body JSON-escaped fits many times over)
MAX_LINE_BYTES = 8 * 1024 * 1024


class ProtocolViolation(ValueError):
    """A line or an answer that breaks the protocol; the message says what is wrong."""


# -- lines ------------------------------------------------------------------------------------------

def encode(obj: dict[str, Any]) -> str:
    """One protocol line (compact JSON, no newline inside, ``\\n`` at the end)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"


def decode_line(line: str | bytes) -> dict[str, Any]:
    """The JSON object of one line; :class:`ProtocolViolation` for anything else."""
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolViolation(f"line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolViolation(f"line is not UTF-8: {e}") from None
    text = line.strip()
    if not text:
        raise ProtocolViolation("empty line")
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ProtocolViolation(f"line is not JSON ({e}): {_clip(text)!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolViolation(f"line is JSON but not an object: {_clip(text)!r}")
    return obj


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "…"


# -- field checks ---------------------------------------------------------------------------------

def _opt(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``obj[key]`` if present and not null, checked to be ``kind`` (bool is never a number)."""
    value = obj.get(key)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ProtocolViolation(f"{what}: field {key!r} must be {_names(kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ProtocolViolation(f"{what}: field {key!r} must be {_names(kinds)}, "
                                f"got {type(value).__name__} {_clip(repr(value), 80)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolViolation(f"{what}: field {key!r} must be a finite number")
    return value


def _req(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if obj.get(key) is None:
        raise ProtocolViolation(f"{what}: required field {key!r} missing")
    return _opt(obj, key, kind, what)


def _names(kinds: tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


NUMBER = (int, float)


def _hex(value: str, n: int, what: str, key: str) -> str:
    try:
        ok = len(value) == n and bytes.fromhex(value) is not None
    except ValueError:
        ok = False
    if not ok:
        raise ProtocolViolation(f"{what}: field {key!r} must be {n} hex characters")
    return value.lower()


# -- requests (harness -> adapter) ----------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """A parsed request: its id, op and the op's fields (validated)."""

    id: int
    op: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_request(obj: dict[str, Any]) -> Request:
    """Validate a request object (the adapter side). The :class:`ProtocolViolation` names the
    field; ``request_id(obj)`` gives the id to answer with when there is one."""
    rid = obj.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int):
        raise ProtocolViolation(f"request: field 'id' must be an integer, got {rid!r}")
    op = obj.get("op")
    if op not in OPS:
        raise ProtocolViolation(f"request {rid}: unknown op {op!r} (known: {', '.join(OPS)})")
    what = f"request {rid} ({op})"
    f: dict[str, Any] = {}
    if op == OP_START:
        f["protocol"] = _req(obj, "protocol", int, what)
        f["seed_url"] = _req(obj, "seed_url", str, what)
        nodes = _opt(obj, "nodes", list, what) or []
        if not all(isinstance(n, dict) for n in nodes):
            raise ProtocolViolation(f"{what}: every entry of 'nodes' must be an object")
        f["nodes"] = nodes
        f["testnet"] = _opt(obj, "testnet", dict, what) or {}
    elif op == OP_ACCOUNT_NEW:
        seed = _opt(obj, "seed", str, what)
        f["seed"] = None if seed is None else _hex(seed, 64, what, "seed")
    elif op == OP_SEND:
        f["to"] = _req(obj, "to", str, what)
        body = obj.get("body")
        if not isinstance(body, str):
            raise ProtocolViolation(f"{what}: field 'body' must be a string")
        f["body"] = body
    elif op == OP_RECV:
        timeout = _opt(obj, "timeout", NUMBER, what)
        if timeout is not None and timeout < 0:
            raise ProtocolViolation(f"{what}: field 'timeout' must be >= 0")
        f["timeout"] = float(timeout or 0.0)
    return Request(rid, op, f)


def request_id(obj: Any) -> int | None:
    """The id of a (possibly invalid) request object, when it has a usable one."""
    rid = obj.get("id") if isinstance(obj, dict) else None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


def node_entry(node: Any) -> dict[str, Any]:
    """A ``nodes`` entry of the ``start`` request from a testnet's node record."""
    return {"name": node.name, "ip": node.public_ip, "storage_port": node.storage_port,
            "pubkey_ed25519": node.pubkey_ed25519, "pubkey_x25519": node.pubkey_x25519,
            "swarm_id": node.swarm_id}


def start_request(net: Any) -> dict[str, Any]:
    """The ``start`` request for a :class:`harness.network.Testnet` (without its id)."""
    return {"op": OP_START, "protocol": PROTOCOL_VERSION, "seed_url": net.seed_url,
            "nodes": [node_entry(n) for n in net.nodes],
            "testnet": {"name": net.name, "seed": str(net.topology.seed)}}


# -- answers (adapter -> harness) -----------------------------------------------------------------

def check_answer(obj: dict[str, Any], expect_id: int, op: str) -> dict[str, Any]:
    """An answer line's object must answer request ``expect_id``: same id, ``ok`` a boolean,
    and ``error`` a string when not ok."""
    what = f"answer to request {expect_id} ({op})"
    rid = obj.get("id", "missing")
    if rid != expect_id or isinstance(rid, bool):
        hint = ""
        if rid is None and obj.get("ok") is False:
            hint = f" (the adapter could not read a request: {obj.get('error')!r})"
        raise ProtocolViolation(f"{what}: field 'id' is {rid!r}, expected {expect_id}{hint}")
    if not isinstance(obj.get("ok"), bool):
        raise ProtocolViolation(f"{what}: field 'ok' must be true or false, got {obj.get('ok')!r}")
    if obj["ok"] is False:
        _req(obj, "error", str, what)
    return obj


@dataclass(frozen=True)
class Hello:
    """The answer to ``start``: who the adapter is and which protocol it speaks."""

    adapter: str
    version: str | None
    protocol: int

    @classmethod
    def from_answer(cls, obj: dict[str, Any]) -> Hello:
        what = "hello (answer to start)"
        protocol = _req(obj, "protocol", int, what)
        if protocol != PROTOCOL_VERSION:
            raise ProtocolViolation(f"{what}: the adapter speaks protocol {protocol}, this harness "
                                    f"speaks {PROTOCOL_VERSION}")
        return cls(adapter=_req(obj, "adapter", str, what),
                   version=_opt(obj, "version", str, what), protocol=protocol)


def parse_account(obj: dict[str, Any]) -> str:
    """The Session ID of an ``account_new`` answer."""
    sid = _req(obj, "session_id", str, "answer to account_new")
    if len(sid) != 66 or not sid.startswith("05"):
        raise ProtocolViolation(f"answer to account_new: 'session_id' must be a 05 Session ID "
                                f"(66 hex characters), got {sid!r}")
    return _hex(sid, 66, "answer to account_new", "session_id")


@dataclass(frozen=True)
class Timing:
    """``started_at`` / ``ended_at`` (unix seconds) an adapter reports for an operation."""

    started_at: float | None
    ended_at: float | None

    @classmethod
    def from_answer(cls, obj: dict[str, Any], what: str) -> Timing:
        s = _opt(obj, "started_at", NUMBER, what)
        e = _opt(obj, "ended_at", NUMBER, what)
        return cls(None if s is None else float(s), None if e is None else float(e))

    def within(self, start: float, end: float) -> tuple[float, float]:
        """The adapter's times when they lie in the harness's window ``[start, end]`` (same host
        clock; they exclude the pipe's overhead), else the window itself."""
        s = self.started_at if self.started_at is not None and start <= self.started_at <= end else start
        e = self.ended_at if self.ended_at is not None and s <= self.ended_at <= end else end
        return s, e


@dataclass(frozen=True)
class SendResult:
    """A ``send`` answer (ok or not): what the checkers need of it."""

    ok: bool
    error: str | None
    error_type: str | None
    hash: str | None
    timestamp_ms: int | None
    timing: Timing
    destination: dict[str, Any] | None
    attempts: list[dict[str, Any]]
    confirmations: int | None

    @classmethod
    def from_answer(cls, obj: dict[str, Any]) -> SendResult:
        what = "answer to send"
        attempts = _opt(obj, "attempts", list, what) or []
        if not all(isinstance(a, dict) for a in attempts):
            raise ProtocolViolation(f"{what}: every entry of 'attempts' must be an object")
        h = _opt(obj, "hash", str, what)
        if h is not None and len(h) != 43:
            raise ProtocolViolation(f"{what}: 'hash' must be the 43-character message hash, got {h!r}")
        return cls(ok=obj["ok"], error=_opt(obj, "error", str, what),
                   error_type=_opt(obj, "error_type", str, what), hash=h,
                   timestamp_ms=_opt(obj, "timestamp", int, what),
                   timing=Timing.from_answer(obj, what),
                   destination=_opt(obj, "destination", dict, what), attempts=attempts,
                   confirmations=_opt(obj, "confirmations", int, what))


@dataclass(frozen=True)
class AdapterMessage:
    """A message a ``recv`` answer returned (the shape scenarios use: ``.sender``, ``.body``,
    ``.hash``, like :class:`harness.client.Received`)."""

    sender: str
    body: str
    hash: str
    timestamp_ms: int | None = None
    namespace: int = 0
    #: the node it was fetched from (Ed25519 hex), when the adapter says
    node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sender": self.sender, "body": self.body, "hash": self.hash,
                "timestamp_ms": self.timestamp_ms, "namespace": self.namespace, "node": self.node}

    @classmethod
    def from_entry(cls, entry: Any, n: int) -> AdapterMessage:
        what = f"answer to recv: messages[{n}]"
        if not isinstance(entry, dict):
            raise ProtocolViolation(f"{what} must be an object")
        return cls(sender=_req(entry, "sender", str, what), body=_req(entry, "body", str, what),
                   hash=_req(entry, "hash", str, what),
                   timestamp_ms=_opt(entry, "timestamp", int, what),
                   namespace=_opt(entry, "namespace", int, what) or 0,
                   node=_opt(entry, "node", str, what))


@dataclass(frozen=True)
class RecvResult:
    """A ``recv`` answer."""

    ok: bool
    error: str | None
    error_type: str | None
    messages: list[AdapterMessage]
    undecryptable: list[dict[str, str]]
    timing: Timing
    polled: list[dict[str, Any]]

    @classmethod
    def from_answer(cls, obj: dict[str, Any]) -> RecvResult:
        what = "answer to recv"
        raw = _opt(obj, "messages", list, what)
        if obj["ok"] and raw is None:
            raise ProtocolViolation(f"{what}: required field 'messages' missing (give [] when "
                                    "nothing arrived)")
        bad = _opt(obj, "undecryptable", list, what) or []
        undecryptable = []
        for u in bad:
            if not isinstance(u, dict):
                raise ProtocolViolation(f"{what}: every entry of 'undecryptable' must be an object")
            undecryptable.append({"hash": str(u.get("hash")), "error": str(u.get("error", ""))})
        polled = _opt(obj, "polled", list, what) or []
        return cls(ok=obj["ok"], error=_opt(obj, "error", str, what),
                   error_type=_opt(obj, "error_type", str, what),
                   messages=[AdapterMessage.from_entry(m, i) for i, m in enumerate(raw or [])],
                   undecryptable=undecryptable, timing=Timing.from_answer(obj, what),
                   polled=[p for p in polled if isinstance(p, dict)])


__all__ = ["MAX_LINE_BYTES", "OPS", "OP_ACCOUNT_NEW", "OP_CLOSE", "OP_RECV", "OP_SEND", "OP_START",
           "PROTOCOL_VERSION", "AdapterMessage", "Hello", "ProtocolViolation", "RecvResult",
           "Request", "SendResult", "Timing", "check_answer", "decode_line", "encode",
           "node_entry", "parse_account", "parse_request", "request_id", "start_request"]
