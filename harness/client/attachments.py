"""Attachments through the file server, over onion paths, as session-desktop does.

* **Upload** (desktop ``uploadFileToFsWithOnionV4``): the file is padded and encrypted
  (:mod:`nodes.protocol.attachment`), and the blob is sent as a v4 onion request
  ``POST /file`` to the file server: the client's onion path carries it, the path's last node
  (the exit) forwards it to the server, which alone can open the final layer
  (:mod:`nodes.protocol.onion_server`). The answer's ``id`` and the server's URL make the
  pointer's ``id`` and ``url`` (``<server>/file/<id>``); key, digest and size come from the
  encryption.
* **Download**: ``GET /file/<id>`` through an onion path the same way; the blob is checked (MAC,
  then digest against the pointer's) and decrypted, the padding cut at the pointer's ``size``.

Each upload and download is an :class:`AttachmentRecord` (kinds ``upload`` / ``download``) with
one attempt per onion request, so reports and checks see them like sends and receives.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

from nodes.protocol.attachment import AttachmentError, decrypt_attachment, encrypt_attachment
from nodes.protocol.message import AttachmentRef
from nodes.protocol.onion import OnionError, parse_enc_type
from nodes.protocol.onion_server import (
    ServerDestination,
    V4Request,
    V4Response,
    build_server_onion_request,
    decrypt_server_response,
    describe_v4,
)

from .config import ClientConfig
from .errors import ClientError, NoPathError
from .failures import (
    EDGE_NOT_READY_PREFIXES,
    NODE_NOT_FOUND_PREFIXES,
    SNODE_NOT_READY_PREFIX,
    FailureClassifier,
    Outcome,
)
from .paths import OnionPath, PathSet
from .policy import PathPolicy
from .records import ONE_OFF_PATH, AttachmentRecord, AttemptRecord, OperationRecord, new_op_id
from .transport import Transport, TransportError

#: extra seconds an onion request to the file server may take per MB it carries (uploads and
#: downloads of 10 MB go through three hops)
SECONDS_PER_MB = 4.0
UPLOAD = "upload"
DOWNLOAD = "download"


class _Op(Protocol):
    """What this module uses of an operation in progress (harness.client.client_base.Operation)."""

    record: OperationRecord
    failed_paths: set[str]
    failed_hops: set[str]
    reported_421: set[tuple[str, str]]

    def attempt(self, method: str, path: OnionPath | None, dest: dict[str, Any] | None,
                enc_type: str | None) -> AttemptRecord: ...


class SessionClient(Protocol):
    """What this module uses of :class:`harness.client.SessionClient` (its paths, policy and
    transport: onion requests to a server follow the same rules as storage RPCs)."""

    config: ClientConfig
    paths: PathSet
    policy: PathPolicy
    failures: FailureClassifier
    _transport: Transport

    async def _ensure_ready(self, op: Any) -> None: ...

    def _request_path(self, exclude: set[str]) -> OnionPath: ...

    def _backoff(self, retry: int) -> float: ...

    def _start(self, record: OperationRecord) -> Any: ...

    def _finish(self, op: Any, error: BaseException | None = None) -> OperationRecord: ...


class FileServerError(ClientError):
    """An upload or download failed: the message names the file server URL, the onion path and
    the status (or that the server could not be reached)."""


class AttachmentCorrupt(FileServerError):
    """The downloaded blob does not verify (MAC, digest) or decrypt with the pointer's key."""


@dataclass(frozen=True)
class FileServer:
    """Where a testnet's file server is: its URL (``http://IP:PORT``) and X25519 key (hex)."""

    url: str
    pubkey_x25519: str

    def __post_init__(self) -> None:
        u = urlparse(self.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"file server URL must be http(s)://host[:port], got {self.url!r}")
        try:
            key = bytes.fromhex(self.pubkey_x25519)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError(f"file server X25519 key must be 64 hex digits, got {self.pubkey_x25519!r}")

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    def destination(self) -> ServerDestination:
        u = urlparse(self.url)
        port = u.port or (443 if u.scheme == "https" else 80)
        return ServerDestination(host=u.hostname or "", port=port,
                                 x25519=bytes.fromhex(self.pubkey_x25519), protocol=u.scheme)

    def file_url(self, file_id: int | str) -> str:
        """The pointer's ``url`` for an uploaded file (desktop: ``<file server>/file/<id>``)."""
        return f"{self.base_url}/file/{file_id}"

    def serves(self, url: str) -> bool:
        """``url`` points at this server (same scheme, host and port)."""
        a, b = urlparse(self.url), urlparse(url)
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def file_id_from_url(url: str) -> int:
    """The id in ``…/file/<id>`` (desktop reads the id from the pointer's URL)."""
    path = urlparse(url).path.rstrip("/")
    head, _, tail = path.rpartition("/")
    if not head.endswith("/file") or not tail.isdigit():
        raise FileServerError(f"attachment URL {url!r} is not a file server URL …/file/<numeric id>")
    return int(tail)


def _timeout(client: SessionClient, nbytes: int) -> float:
    return client.config.request_timeout + SECONDS_PER_MB * nbytes / 1_000_000


def _path_text(path: OnionPath) -> str:
    return " -> ".join(f"{h.ip}:{h.port}" for h in path.hops)


async def _choose_path(client: SessionClient, op: _Op) -> tuple[OnionPath, bool]:
    """One of the client's paths (one that has not failed this operation if there is one),
    else a path built for this request; True when built for it."""
    await client._ensure_ready(op)
    path = client.paths.choose(None, avoid=op.failed_paths)
    if path is not None and path.id not in op.failed_paths:
        return path, False
    try:
        return client._request_path(op.failed_hops | client.policy.quarantined()), True
    except NoPathError:
        if path is not None:
            return path, False
        raise


async def server_request(client: SessionClient, op: _Op, server: FileServer, request: V4Request,
                         *, label: str) -> V4Response:
    """Send a v4 request to ``server`` through an onion path, with the client's retry rules.

    Path failures strike the path as for storage RPCs and retry on another one; an exit node
    that cannot reach the server (502/504 with a non-path text) and a server 5xx are retried
    too; a server 4xx is final. Raises :class:`FileServerError` naming server, path and status.
    """
    enc = parse_enc_type(client.config.enc_type)
    nbytes = len(request.body or b"")
    dest_ref = {"url": server.base_url, "endpoint": f"{request.method} {request.endpoint}"}
    last = "no attempt made"
    for n in range(1, client.config.max_attempts + 1):
        path, one_off = await _choose_path(client, op)
        a = op.attempt(label, path, dest_ref, enc)
        if one_off:
            a.actions.append(ONE_OFF_PATH)
        exit_node = path.hops[-1]
        where = f"file server {server.base_url} via path {_path_text(path)}"
        try:
            built = build_server_onion_request([h.hop() for h in path.hops], server.destination(),
                                               request, enc)
        except OnionError as exc:
            raise FileServerError(f"{label}: cannot build the onion request for {where}: {exc}") from None
        t0 = time.monotonic()
        try:
            res = await client._transport.post(f"{path.guard.url}/onion_req/v2", built.frame,
                                               timeout=_timeout(client, nbytes))
        except TransportError as exc:
            a.elapsed_ms = (time.monotonic() - t0) * 1000
            client.failures.transport(a, exc, path, exit_node, label)
            op.failed_paths.add(path.id)
            last = f"{where}: no answer ({exc.kind}: {exc.detail})"
            a.error = last
        else:
            a.elapsed_ms = (time.monotonic() - t0) * 1000
            a.http_status = res.status
            text = res.text().strip() if res.status != 200 else ""
            if res.status != 200 and _is_server_unreachable(res.status, text):
                # the exit node answered for the server: the path worked, the server did not
                a.error_kind = "destination"
                last = (f"{where}: the exit node {exit_node} could not reach the server "
                        f"(status {res.status}: {text[:200]!r})")
                a.error = last
            elif res.status != 200:
                verdict = client.failures.path_status(op.reported_421, a, res, path, exit_node,
                                                      label, None)
                op.failed_paths.add(path.id)
                last = f"{where}: status {res.status} on the path: {text[:200]!r}"
                if verdict.kind == Outcome.FATAL:
                    raise FileServerError(f"{label} failed: {last}", record=op.record)
            else:
                try:
                    resp = decrypt_server_response(built, res.body)
                except OnionError as exc:
                    a.error_kind, a.error = "decrypt", f"{where}: {exc}"
                    last = a.error
                else:
                    a.status = resp.code
                    if 200 <= resp.code < 300:
                        a.ok = True
                        return resp
                    last = f"{where}: the server answered {describe_v4(resp)}"
                    a.error_kind = "rejected" if resp.code < 500 else "destination"
                    a.error = last
                    if resp.code < 500:
                        raise FileServerError(f"{label} refused: {last}", record=op.record)
        if n < client.config.max_attempts:
            await asyncio.sleep(client._backoff(n))
    raise FileServerError(f"{label} failed after {client.config.max_attempts} attempt(s): {last}",
                          record=op.record)


def _is_server_unreachable(status: int, text: str) -> bool:
    """A plain 502/504 from the exit about its request to the server, not a path failure."""
    if status not in (502, 504):
        return False
    path_texts = NODE_NOT_FOUND_PREFIXES + (SNODE_NOT_READY_PREFIX,) + EDGE_NOT_READY_PREFIXES
    return not text.startswith(path_texts) and text != "Request time out"


def _start(client: SessionClient, kind: str, server: FileServer) -> _Op:
    rec = AttachmentRecord(op_id=new_op_id(kind), kind=kind, enc_type=client.config.enc_type,
                           server_url=server.base_url)
    op: _Op = client._start(rec)
    return op


async def upload(client: SessionClient, server: FileServer, data: bytes, *,
                 file_name: str | None = None, content_type: str | None = None
                 ) -> tuple[AttachmentRef, AttachmentRecord]:
    """Encrypt ``data`` and upload it; the pointer fields and the operation record."""
    op = _start(client, UPLOAD, server)
    rec = op.record
    assert isinstance(rec, AttachmentRecord)
    rec.file_name, rec.size = file_name, len(data)
    try:
        try:
            enc = encrypt_attachment(data)
        except AttachmentError as exc:
            raise FileServerError(f"cannot upload {file_name or 'attachment'}: {exc}") from None
        rec.blob_bytes, rec.digest = len(enc.blob), enc.digest.hex()
        resp = await server_request(
            client, op, server,
            V4Request("POST", "/file", {"Content-Type": "application/octet-stream"}, enc.blob),
            label=UPLOAD)
        file_id = _file_id(resp, server)
    except ClientError as exc:
        failure = exc if isinstance(exc, FileServerError) else FileServerError(
            f"upload to file server {server.base_url} failed: {exc}")
        failure.record = rec
        client._finish(op, failure)
        raise failure from None
    ref = AttachmentRef(file_id=file_id, url=server.file_url(file_id), key=enc.key,
                        digest=enc.digest, size=len(data), content_type=content_type,
                        file_name=file_name)
    rec.file_id, rec.url = file_id, ref.url
    rec.path = op.record.attempts[-1].path
    return ref, _finished(client, op)


def _finished(client: SessionClient, op: _Op) -> AttachmentRecord:
    rec = client._finish(op)
    assert isinstance(rec, AttachmentRecord)
    return rec


def _file_id(resp: V4Response, server: FileServer) -> int:
    try:
        body = resp.json()
    except OnionError as exc:
        raise FileServerError(f"file server {server.base_url} answered the upload with no JSON: "
                              f"{exc}") from None
    value = body.get("id") if isinstance(body, dict) else None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 64:
        raise FileServerError(f"file server {server.base_url} answered the upload without a "
                              f"numeric id: {describe_v4(resp)}")
    return value


async def download(client: SessionClient, server: FileServer, ref: AttachmentRef
                   ) -> tuple[bytes, AttachmentRecord]:
    """Download, verify (MAC and the pointer's digest) and decrypt the attachment of ``ref``."""
    op = _start(client, DOWNLOAD, server)
    rec = op.record
    assert isinstance(rec, AttachmentRecord)
    rec.file_name, rec.size, rec.url, rec.digest = ref.file_name, ref.size, ref.url, ref.digest.hex()
    try:
        if ref.url and not server.serves(ref.url):
            raise FileServerError(f"attachment URL {ref.url} is not on the file server "
                                  f"{server.base_url} this client uses")
        file_id = file_id_from_url(ref.url) if ref.url else ref.file_id
        rec.file_id = file_id
        if not ref.digest:
            raise AttachmentCorrupt(f"attachment {file_id} has no digest in its pointer: "
                                    "it cannot be verified")
        resp = await server_request(client, op, server, V4Request("GET", f"/file/{file_id}"),
                                    label=DOWNLOAD)
        rec.blob_bytes = len(resp.body)
        try:
            data = decrypt_attachment(resp.body, key=ref.key, digest=ref.digest, size=ref.size)
        except AttachmentError as exc:
            raise AttachmentCorrupt(f"attachment {file_id} from {server.base_url}: {exc}") from None
    except ClientError as exc:
        failure = exc if isinstance(exc, FileServerError) else FileServerError(
            f"download from file server {server.base_url} failed: {exc}")
        failure.record = rec
        client._finish(op, failure)
        raise failure from None
    rec.details["digest_verified"] = True
    rec.path = op.record.attempts[-1].path
    return data, _finished(client, op)


def ref_summary(ref: AttachmentRef) -> dict[str, Any]:
    """What records and JSON output keep of a pointer (never the key)."""
    return {"id": ref.file_id, "url": ref.url, "size": ref.size, "digest": ref.digest.hex(),
            "file_name": ref.file_name, "content_type": ref.content_type}
