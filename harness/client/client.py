"""The asyncio Session client.

:class:`SessionClient` talks to a testnet (or any Session network) the way session-desktop and
libsession-util do.  Its parts, one module each:

* :mod:`harness.client.client_base` — the shared state and the operation records: every
  operation produces an :class:`~harness.client.records.OperationRecord` for the sink;
* :mod:`harness.client.upkeep` — bootstrap from the seed(s) (or, without a seed, from the service
  nodes of a kept node list), node pool refreshes, onion path building;
* :mod:`harness.client.onion_requests` — every storage RPC goes through an onion path, with the
  failure handling of docs/client.md (classification, retries, clock resync, 421);
* :mod:`harness.client.receiving` — ``receive`` / ``wait_for``: polling the own swarm;
* this module: ``get_swarm`` (``get_snodes_for_pubkey``) to a random node, cached per account;
  ``send``: a real Session 1-to-1 message stored in namespace 0 with a 14-day TTL on a random
  member of the recipient's swarm, its per-member confirmations verified; attachments through
  the file server (:mod:`harness.client.attachments`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Sequence
from typing import Any

from nodes.protocol.encoding import b64decode_any
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import PREFIX_X25519, SessionID, verify_ed25519
from nodes.protocol.message import AttachmentRef, MessageError, encrypt_message
from nodes.protocol.onion import parse_enc_type

from . import attachments as att
from .client_base import Operation
from .errors import ClientError, DestinationError, StoreFailed, StoreUnconfirmed, SwarmError
from .onion_requests import Target
from .receiving import Receiving
from .records import AttemptRecord, OperationRecord, SendRecord, new_op_id
from .snode import Snode, parse_swarm_body
from .upkeep import NodeUpkeep

GET_SWARM_METHOD = "get_snodes_for_pubkey"  # session-desktop's name (alias of get_swarm)


class SessionClient(Receiving, NodeUpkeep):
    """A Session client bound to one account.  Use as ``async with SessionClient(...) as c:``.

    ``seeds``: seed URL(s) (``http://127.X.0.1:22023``; ``/json_rpc`` is appended).
    ``account``: an :class:`Account`, an :class:`Identity` or None (a new random account).
    ``sink``: where finished operation records go (a list, or a callable).
    ``transport`` / ``clock`` / ``rng``: injectable for tests (``local_now_ms`` skews the clock).
    ``nodes``: a node list kept from an earlier run (an app's database, ``pool.nodes()``): the
    pool starts with it, and a refresh no seed answers asks these nodes instead.
    ``file_server``: the :class:`~harness.client.attachments.FileServer` attachments go to.
    Settings: a :class:`ClientConfig` and/or keyword overrides (``enc_type="xchacha20"``, …).

    (Pool and paths: :class:`~harness.client.upkeep.NodeUpkeep`; requests:
    :class:`~harness.client.onion_requests.OnionRequests`; polling:
    :class:`~harness.client.receiving.Receiving`.)
    """

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

    async def _swarm_members(self, session_id: str, op: Operation, *, refresh: bool,
                             enc_type: str | None = None) -> list[Snode]:
        entry = self._swarms.get(session_id)
        if entry is not None and not refresh:
            fresh = time.monotonic() - entry.fetched_at < self.config.swarm_cache_ttl
            # session-desktop refetches when fewer than min(3, swarm size) members are left
            if fresh and entry.members and len(entry.members) >= min(3, entry.fetched_size):
                return list(entry.members)
        target = Target(self)

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
            target = Target(self, pubkey=to, enc_type=enc)

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
