"""Receiving: polling the own swarm for 1-to-1 messages.

``receive``: signed ``retrieve`` with the last hash of each polled node, deduplicated by hash,
decrypted and verified (sender derived from the signature key); one node (preferably one with a
last hash), a sample of the swarm at once (session-desktop ``pollOnceForKey``) or every member,
as ``poll_mode`` says.  ``wait_for`` polls until the expected messages arrived.
"""

from __future__ import annotations

import asyncio
import binascii
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nodes.protocol.encoding import b64decode_any
from nodes.protocol.hashing import message_hash
from nodes.protocol.message import AttachmentRef, MessageError, decrypt_message
from nodes.protocol.onion import parse_enc_type
from nodes.protocol.signing import retrieve_message, sign_request

from . import attachments as att
from .client_base import Operation
from .config import POLL_ALL, POLL_SAMPLE, RETRIEVE_SNODES_COUNT
from .errors import ClientError, RetrieveFailed, Timeout
from .onion_requests import OnionRequests, Target
from .records import ReceiveRecord, new_op_id
from .snode import Snode


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


class Receiving(OnionRequests):
    """Polls the client's own swarm (``receive``, ``wait_for``)."""

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
                            op, Target(self, pubkey=self.session_id, fixed=m, enc_type=enc), nss, enc))
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
                    op, Target(self, pubkey=self.session_id, fixed=m, enc_type=enc), nss, enc)
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

                target = Target(self, pubkey=self.session_id, prefer=prefer, enc_type=enc)
                out.extend(await self._poll_node(op, target, nss, enc))
        except ClientError as exc:
            failure = RetrieveFailed(f"cannot retrieve messages of {self.session_id}: {exc}", record=rec)
            rec.details["cause"] = type(exc).__name__
            self._finish(op, failure)
            raise failure from exc
        out.sort(key=lambda m: m.timestamp_ms)  # stable: equal timestamps keep storage order
        self._finish(op)
        return out

    async def _poll_node(self, op: Operation, target: Target, namespaces: list[int], enc: str) -> list[Received]:
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
                target = Target(self, pubkey=self.session_id, fixed=dest, enc_type=enc)  # pages / namespaces: same node
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
