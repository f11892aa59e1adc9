"""API errors and Go-compatible request decoding.

Toxiproxy answers errors as ``{"error": message, "status": code}`` and decodes request bodies with
Go's ``encoding/json``: the first JSON value of the body is used, object keys match struct fields
exactly or case-insensitively (the last matching key wins), ``null`` leaves a field at its default
and a value of the wrong JSON kind is a 400 ``bad request body: json: cannot unmarshal ...``.
The helpers here reproduce those rules and messages (see docs/toxiproxy.md for the few messages
that are only approximations of Go's wording).
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from typing import Any


@dataclass
class ApiError(Exception):
    message: str
    status: int

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}

    def wrap(self, inner: str) -> ApiError:
        """Go's ``joinError``: ``"<message>: <inner>"`` with the same status."""
        return ApiError(f"{self.message}: {inner}", self.status)


BAD_REQUEST_BODY = ApiError("bad request body", 400)
MISSING_FIELD = ApiError("missing required field", 400)
PROXY_NOT_FOUND = ApiError("proxy not found", 404)
PROXY_ALREADY_EXISTS = ApiError("proxy already exists", 409)
INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)
TOXIC_ALREADY_EXISTS = ApiError("toxic already exists", 409)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)


def decode_json(raw: bytes) -> Any:
    """Decode the first JSON value of a request body like Go's ``json.Decoder.Decode``.

    Raises ``ApiError(400, "bad request body: ...")`` on an empty or malformed body.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BAD_REQUEST_BODY.wrap(f"invalid UTF-8 in request body at byte {e.start}") from None
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise BAD_REQUEST_BODY.wrap("EOF")
    try:
        value, _end = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError as e:
        if e.pos >= len(stripped):
            raise BAD_REQUEST_BODY.wrap("unexpected EOF") from None
        ch = stripped[e.pos]
        where = "looking for beginning of value" if e.pos == 0 else f"({e.msg})"
        raise BAD_REQUEST_BODY.wrap(f"invalid character {ch!r} {where}") from None
    return value


def json_kind(value: Any) -> str:
    """The JSON kind name Go puts in ``cannot unmarshal <kind> into ...``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def type_error(value: Any, struct: str, field: str, go_type: str) -> ApiError:
    kind = json_kind(value)
    if kind == "number" and go_type.startswith(("int", "uint")):
        kind = f"number {json.dumps(value)}"
    return BAD_REQUEST_BODY.wrap(
        f"json: cannot unmarshal {kind} into Go struct field {struct}.{field} of type {go_type}")


def top_level_error(value: Any, go_type: str) -> ApiError:
    return BAD_REQUEST_BODY.wrap(f"json: cannot unmarshal {json_kind(value)} into Go value of type {go_type}")


def pick_fields(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Values of `fields` from a decoded JSON object with Go's key matching.

    Keys are processed in document order; a key sets the field it equals exactly, or else the
    field it equals case-insensitively; a later key overrides an earlier one. Fields that are
    absent or ``null`` are left out of the result.
    """
    exact = {f: f for f in fields}
    folded = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        target = exact.get(key) or folded.get(key.lower())
        if target is None:
            continue
        if value is None:
            continue
        out[target] = value
    return out


def check_str(values: dict[str, Any], field: str, struct: str) -> str | None:
    if field not in values:
        return None
    v = values[field]
    if not isinstance(v, str):
        raise type_error(v, struct, field, "string")
    return v


def check_bool(values: dict[str, Any], field: str, struct: str) -> bool | None:
    if field not in values:
        return None
    v = values[field]
    if not isinstance(v, bool):
        raise type_error(v, struct, field, "bool")
    return v


def check_float(values: dict[str, Any], field: str, struct: str) -> float | None:
    if field not in values:
        return None
    v = values[field]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise type_error(v, struct, field, "float32")
    return float(v)


INT_RANGES = {"int64": (-(2**63), 2**63 - 1), "int": (-(2**63), 2**63 - 1)}


def check_int(value: Any, struct: str, field: str, go_type: str) -> int:
    """A JSON integer for a Go int field (floats such as ``1.5`` or ``1.0`` are rejected like Go)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(value, struct, field, go_type)
    lo, hi = INT_RANGES[go_type]
    if not lo <= value <= hi:
        raise type_error(value, struct, field, go_type)
    return value


# -- Go's net error texts -------------------------------------------------------------------------

def go_errno_text(err: OSError) -> str:
    """Go's lower-case errno strings ("address already in use", "permission denied", ...)."""
    if err.errno is not None:
        text = os.strerror(err.errno)
    else:
        text = str(err)
    if err.errno == errno.EADDRINUSE:
        return "address already in use"
    return text[:1].lower() + text[1:]
