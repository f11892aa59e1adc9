"""A file server for :class:`~harness.client.fakenet.FakeNetwork`: pure, in memory.

It opens what an exit node forwards with the real protocol library
(:func:`nodes.protocol.onion_server.open_server_request`), answers v4 requests for ``POST /file``
and ``GET /file/<id>`` as the testnet's file server does (JSON ``{"id": n}``, 413 over the size
limit, 404 for an unknown id) and encrypts its answer for the client. Knobs: ``up`` (the exit
cannot reach it: 502), ``fail_uploads`` (answers 500), ``corrupt_downloads`` (flips a byte of
every file it serves). ``log`` keeps (remote, method, endpoint) of every request it opened.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

from nodes.protocol.attachment import IV_BYTES, MAC_BYTES, MAX_ATTACHMENT_BYTES
from nodes.protocol.keys import Identity, derive_seed
from nodes.protocol.onion import OnionError
from nodes.protocol.onion_server import (
    V4Request,
    V4Response,
    invalid_v4_response,
    open_server_request,
)

from .attachments import FileServer
from .transport import HttpResult

#: the largest blob accepted: a 10 MB plaintext, PKCS#7's extra block, IV and MAC
MAX_BLOB_BYTES = MAX_ATTACHMENT_BYTES + 16 + IV_BYTES + MAC_BYTES


@dataclass
class FakeFileServer:
    host: str = "10.0.250.1"
    port: int = 80
    seed: str = "fake"
    up: bool = True
    fail_uploads: bool = False
    corrupt_downloads: bool = False
    files: dict[int, bytes] = field(default_factory=dict)
    log: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.identity = Identity.from_seed(derive_seed(self.seed, "fileserver", "fs"))
        self._ids = itertools.count(1001)

    @property
    def info(self) -> FileServer:
        return FileServer(f"http://{self.host}:{self.port}", self.identity.x25519_hex)

    def handle(self, body: bytes, remote: str) -> HttpResult:
        """What the exit node gets back for a POST to /oxen/v4/lsrpc."""
        try:
            req = open_server_request(body, self.identity.x25519_secret, self.identity.x25519_public)
        except OnionError as exc:
            return HttpResult(400, str(exc).encode())
        try:
            v4 = V4Request.decode(req.payload)
        except OnionError:
            resp = invalid_v4_response()
        else:
            self.log.append((remote, v4.method, v4.endpoint))
            resp = self._answer(v4)
        return HttpResult(200, req.encrypt_reply(resp.encode()))

    def _answer(self, v4: V4Request) -> V4Response:
        if v4.method == "POST" and v4.endpoint == "/file":
            if self.fail_uploads:
                return _json(500, {"error": "upload failed"})
            data = v4.body or b""
            if len(data) > MAX_BLOB_BYTES:
                return _json(413, {"error": f"file too large: {len(data)} bytes"})
            file_id = next(self._ids)
            self.files[file_id] = data
            return _json(200, {"id": file_id})
        if v4.method == "GET" and v4.endpoint.startswith("/file/"):
            tail = v4.endpoint.removeprefix("/file/")
            stored = self.files.get(int(tail)) if tail.isdigit() else None
            if stored is None:
                return _json(404, {"error": "not found"})
            if self.corrupt_downloads:
                stored = bytes([stored[0] ^ 1]) + stored[1:]
            return V4Response(200, {"content-type": "application/octet-stream"}, stored)
        return _json(404, {"error": f"no route {v4.method} {v4.endpoint}"})


def _json(code: int, body: object) -> V4Response:
    return V4Response(code, {"content-type": "application/json"}, json.dumps(body).encode())
