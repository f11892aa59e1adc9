"""Reading the fields of a storage RPC's JSON params (PROTOCOL.md §4) with the JSON types the
production storage server's ``parse_field`` checks, and the errors a malformed field raises:
:class:`ParseError` (the handler answers ``400 "invalid request: <reason>"``) and
:class:`MissingSignature`. The requests built from these fields are in
:mod:`nodes.snode.requests`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from nodes.common.values import is_int
from nodes.protocol.encoding import is_base64

MIN_TIMESTAMP_MS = 1_000_000_000  # below this a "timestamp" was given in seconds
MAX_INT64 = 2**63 - 1
NAMESPACE_ALL = "all"

T = TypeVar("T")


class ParseError(ValueError):
    """A request field is missing or invalid: 400 "invalid request: <reason>"."""


class MissingSignature(ParseError):
    """A request that needs a signature came without one: 400 "invalid request: Required field
    'signature' missing", as the storage server and PROTOCOL.md §4 answer it."""


MISSING_SIGNATURE_TEXT = "invalid request: Required field 'signature' missing"


def _present(params: Mapping[str, Any], name: str) -> Any:
    return params.get(name)


def invalid_value(name: str, desc: str) -> ParseError:
    """400 "Invalid value given for '<name>': expected <desc>"."""
    return ParseError(f"Invalid value given for '{name}': expected {desc}")


def f_str(p: Mapping[str, Any], name: str) -> str | None:
    v = _present(p, name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise invalid_value(name, "string")
    return v


def f_bool(p: Mapping[str, Any], name: str) -> bool | None:
    v = _present(p, name)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise invalid_value(name, "boolean")
    return v


def f_int(p: Mapping[str, Any], name: str) -> int | None:
    v = _present(p, name)
    if v is None:
        return None
    if not is_int(v):
        raise invalid_value(name, "integer")
    return v


def _check_ts(name: str, v: int) -> int:
    if v < MIN_TIMESTAMP_MS:
        raise ParseError(f"Invalid timestamp for '{name}': timestamp must be in milliseconds")
    return v


def f_ts(p: Mapping[str, Any], name: str) -> int | None:
    v = _present(p, name)
    if v is None:
        return None
    if not is_int(v) or not 0 <= v <= MAX_INT64:
        raise invalid_value(name, "integer timestamp (in milliseconds)")
    return _check_ts(name, v)


def f_stringified(p: Mapping[str, Any], name: str, unsigned: bool) -> int | None:
    """ttl / timestamp of store: an integer, or (backwards compat) a stringified integer."""
    v = _present(p, name)
    if v is None:
        return None
    if isinstance(v, str):
        if (not re.fullmatch(r"-?[0-9]{1,19}", v) or (unsigned and v.startswith("-"))
                or abs(int(v)) > MAX_INT64):
            raise ParseError(f"Invalid value given for '{name}': {json.dumps(v)}")
        return int(v)
    if not is_int(v) or (unsigned and v < 0) or abs(v) > MAX_INT64:
        raise invalid_value(name, "positive integer" if unsigned else "integer")
    return v


def f_namespace(p: Mapping[str, Any], name: str = "namespace", allow_all: bool = False) -> int | str | None:
    v = _present(p, name)
    if v is None:
        return None
    if is_int(v):
        if not -32768 <= v <= 32767:
            raise ParseError(f"Invalid value given for '{name}': value out of range")
        return v
    if allow_all and v == NAMESPACE_ALL:
        return NAMESPACE_ALL
    if allow_all:
        raise ParseError(f"Invalid value given for '{name}': expected integer or \"all\"")
    raise invalid_value(name, "16-bit integer")


def f_str_list(p: Mapping[str, Any], name: str) -> list[str] | None:
    v = _present(p, name)
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise invalid_value(name, "string array")
    return list(v)


def f_ts_list(p: Mapping[str, Any], name: str) -> list[int] | None:
    v = _present(p, name)
    if v is None:
        return None
    vals = [v] if not isinstance(v, list) else v
    if not all(is_int(x) and 0 <= x <= MAX_INT64 for x in vals):
        raise invalid_value(name, "timestamp array")
    return [int(x) for x in vals]


def require(name: str, v: T | None) -> T:
    """`v`, which must be present (else 400 "Required field '<name>' missing")."""
    if v is None:
        raise ParseError(f"Required field '{name}' missing")
    return v


def is_valid_hash(h: str) -> bool:
    return len(h) == 43 and is_base64(h)
