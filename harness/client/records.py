"""Operation records: what the client did for each ``send`` / ``receive`` / ``get_swarm`` /
``bootstrap``, attempt by attempt.  Checkers and reports consume them.

Records are plain dataclasses; ``to_dict()`` gives JSON-ready data and ``record_from_dict()``
rebuilds the right class from it (``kind`` decides), so a list of records round-trips through a
JSON file.  A client appends every finished record to its *sink*: a ``list`` (appended to) or a
callable (called with the record).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: where finished records go
RecordSink = list | Callable[["OperationRecord"], None]

OUTCOME_OK = "ok"
OUTCOME_ERROR = "error"


#: attempt action: the onion path was built for this request only (a retry around failed paths,
#: or no kept path fits the destination); its guard is not one of the client's guards
ONE_OFF_PATH = "one_off_path"


def new_op_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


@dataclass
class AttemptRecord:
    """One request the client sent for an operation (one onion request, or one seed call)."""

    n: int
    method: str
    #: onion path, guard first: [{"ip", "port", "ed25519"}]; empty for direct calls (seed)
    path: list[dict[str, Any]] = field(default_factory=list)
    #: the destination node ({"ip", "port", "ed25519"}) or {"url": …} for a seed
    destination: dict[str, Any] | None = None
    enc_type: str | None = None
    started_at: float = 0.0
    elapsed_ms: float = 0.0
    #: HTTP status of the guard's answer (None: no answer: connection error or timeout)
    http_status: int | None = None
    #: status the destination put in the encrypted answer (None if it was not reached)
    status: int | None = None
    ok: bool = False
    #: short error class: connect, timeout, path, decrypt, destination, rejected, swarm, clock,
    #: unconfirmed, seed
    error_kind: str | None = None
    error: str | None = None
    #: the node the failure is attributed to, when known ({"ip", "port", "ed25519"})
    failed_node: dict[str, Any] | None = None
    #: what the client did about it (e.g. "path_strike", "drop_node", "swarm_replaced")
    actions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttemptRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class OperationRecord:
    """A client operation from start to end."""

    op_id: str
    kind: str
    account: str | None = None
    #: send: the recipient; receive: the own session id; get_swarm: the account looked up
    recipient: str | None = None
    enc_type: str | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    outcome: str | None = None
    error: str | None = None
    error_type: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    #: the destination / path of the successful attempt
    destination: dict[str, Any] | None = None
    path: list[dict[str, Any]] = field(default_factory=list)
    #: network clock offset (local − network, ms) when the operation ended
    clock_offset_ms: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == OUTCOME_OK

    @property
    def duration_ms(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at) * 1000.0

    @property
    def failed_attempts(self) -> list[AttemptRecord]:
        return [a for a in self.attempts if not a.ok]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_ms"] = self.duration_ms
        return data

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperationRecord:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["attempts"] = [AttemptRecord.from_dict(a) for a in data.get("attempts", [])]
        return cls(**kwargs)


@dataclass
class SendRecord(OperationRecord):
    """A ``send``: the stored message and who confirmed it."""

    #: message hash as the storage server computes it (base64, 43 chars)
    message_hash: str | None = None
    #: the message / store timestamp (network time, ms)
    timestamp_ms: int | None = None
    namespace: int = 0
    ttl_ms: int | None = None
    #: swarm members that returned a valid signature of the message hash
    confirmations: int = 0
    #: per swarm member: {"ok": bool, "reason": str | None, "already": bool}
    swarm_results: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ReceiveRecord(OperationRecord):
    """A ``receive`` (one poll of the own swarm)."""

    #: nodes polled: [{"ip", "port", "ed25519", "last_hash_before", "last_hash_after", "count"}]
    polled: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[int] = field(default_factory=list)
    #: hashes of messages returned for the first time (decrypted or not)
    new_hashes: list[str] = field(default_factory=list)
    #: hashes seen again (already returned by an earlier poll or another node)
    duplicate_hashes: list[str] = field(default_factory=list)
    #: {"hash", "error"} for messages that did not decrypt / verify
    undecryptable: list[dict[str, str]] = field(default_factory=list)


@dataclass
class AttachmentRecord(OperationRecord):
    """An attachment ``upload`` or ``download`` (kind) through an onion path to the file server."""

    #: the file server's URL, the file's id there and the pointer's url
    server_url: str | None = None
    file_id: int | None = None
    url: str | None = None
    file_name: str | None = None
    #: plaintext size (the pointer's ``size``) and the encrypted blob's size on the wire
    size: int | None = None
    blob_bytes: int | None = None
    #: SHA-256 of the blob (hex), as in the pointer
    digest: str | None = None


_KINDS: dict[str, type[OperationRecord]] = {"send": SendRecord, "receive": ReceiveRecord,
                                            "upload": AttachmentRecord,
                                            "download": AttachmentRecord}


def record_from_dict(data: dict[str, Any]) -> OperationRecord:
    """Rebuild a record (right subclass by ``kind``) from ``to_dict()`` output."""
    return _KINDS.get(data.get("kind", ""), OperationRecord).from_dict(data)


def emit(sink: RecordSink | None, record: OperationRecord) -> None:
    """Hand a finished record to the sink (list or callable); None discards it."""
    if sink is None:
        return
    if isinstance(sink, list):
        sink.append(record)
    else:
        sink(record)
