"""JSON-RPC 2.0 envelopes, as oxend serves them and the seed (its stand-in) answers them.

The seed builds answers with :func:`result` / :func:`error`; a storage node builds requests with
:func:`request` and unwraps answers with :func:`unwrap`.
"""

from __future__ import annotations

from typing import Any

VERSION = "2.0"

# error codes of the JSON-RPC 2.0 specification
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class JsonRpcError(Exception):
    """A JSON-RPC call failed: an ``error`` answer (``code`` set) or a malformed answer."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def request(method: str, params: dict[str, Any] | None = None, req_id: Any = 0) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": req_id, "method": method, "params": params or {}}


def result(req_id: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": req_id, "result": value}


def error(req_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": req_id, "error": {"code": code, "message": message}}


def unwrap(doc: Any, method: str = "call") -> Any:
    """The ``result`` of a JSON-RPC answer; raises JsonRpcError with the server's message."""
    if not isinstance(doc, dict):
        raise JsonRpcError(f"{method}: answer is not a JSON-RPC object: {str(doc)[:200]}")
    err = doc.get("error")
    if err:
        if isinstance(err, dict):
            code = err.get("code")
            raise JsonRpcError(str(err.get("message", err)), code if isinstance(code, int) else None)
        raise JsonRpcError(str(err))
    if "result" not in doc:
        raise JsonRpcError(f"{method}: answer has no result: {str(doc)[:200]}")
    return doc["result"]
