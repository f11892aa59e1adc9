"""The file server's HTTP API, shared by direct requests and the inner requests of v4 onion
requests (docs/fileserver.md, from session-file-server ``routes.py``)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodes.common.http import BINARY_CONTENT_TYPE, JSON_CONTENT_TYPE

from .store import FileStore

_FILE = re.compile(r"^/file/([^/]+)$")
_FILE_INFO = re.compile(r"^/file/([^/]+)/info$")


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    content_type: str
    body: bytes
    #: what the request named or created (for observations)
    file_id: str | None = None
    size: int | None = None


def _json(status: int, data: Any, **kw: Any) -> ApiAnswer:
    return ApiAnswer(status, JSON_CONTENT_TYPE, json.dumps(data).encode("utf-8"), **kw)


def _error(status: int, **kw: Any) -> ApiAnswer:
    """Production's error answer: ``{"status_code": N}`` with that HTTP status."""
    return _json(status, {"status_code": status}, **kw)


class FileApi:
    def __init__(self, store: FileStore, max_file_size: int, file_expiry: float, log: Any = None) -> None:
        self.store = store
        self.max_file_size = max_file_size
        self.file_expiry = file_expiry
        self.log = log

    async def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> ApiAnswer:
        path = path.split("?", 1)[0]
        method = method.upper()
        if path == "/file":
            if method != "POST":
                return _error(405)
            return await self.upload(body)
        m = _FILE_INFO.match(path)
        if m:
            return self.info(m.group(1)) if method == "GET" else _error(405, file_id=m.group(1))
        m = _FILE.match(path)
        if m:
            return await self.download(m.group(1)) if method == "GET" else _error(405, file_id=m.group(1))
        return _error(404)

    async def upload(self, body: bytes) -> ApiAnswer:
        if not 0 < len(body) <= self.max_file_size:
            if self.log:
                self.log.warning("upload_rejected", size=len(body), max=self.max_file_size)
            return _error(413, size=len(body))
        try:
            info = await self.store.put(body, self.file_expiry)
        except OSError as e:
            if self.log:
                self.log.error("upload_failed", size=len(body), error=str(e))
            return _error(500, size=len(body))
        if self.log:
            self.log.info("file_stored", file_id=info.file_id, size=info.size)
        return _json(200, {"id": info.file_id}, file_id=info.file_id, size=info.size)

    async def download(self, file_id: str) -> ApiAnswer:
        data = await self.store.get(file_id)
        if data is None:
            return _error(404, file_id=file_id)
        return ApiAnswer(200, BINARY_CONTENT_TYPE, data, file_id=file_id, size=len(data))

    def info(self, file_id: str) -> ApiAnswer:
        info = self.store.info(file_id)
        if info is None:
            return _error(404, file_id=file_id)
        return _json(200, {"size": info.size, "uploaded": info.uploaded, "expires": info.expires},
                     file_id=file_id, size=info.size)
