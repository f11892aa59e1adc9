"""Untrusted JSON in: one parser for every body a node or the seed reads from the network.

``json.loads`` raises :class:`RecursionError` (not :class:`ValueError`) on deeply nested input
such as ``[[[[…]]]]``, and bytes that are not UTF-8 raise :class:`UnicodeDecodeError`; handlers
that catch only ``ValueError`` then answer 500.  :func:`loads` turns all of these into
:class:`JsonInputError` (a ``ValueError``) whose message says what is wrong, so every caller
answers 400 with a reason.
"""

from __future__ import annotations

import json
from typing import Any


class JsonInputError(ValueError):
    """The input is not acceptable JSON; the message names why (encoding, nesting, syntax)."""


class JsonSyntaxError(JsonInputError):
    """Not JSON at all (the storage server answers this with a bare "invalid json")."""


class JsonNestingError(JsonInputError):
    """Nested deeper than the parser's recursion limit."""


class JsonEncodingError(JsonInputError):
    """The bytes are not UTF-8."""


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse untrusted JSON; raises :class:`JsonInputError` with a reason."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonEncodingError(f"body is not UTF-8: invalid byte at offset {exc.start}") from None
    else:
        text = data
    try:
        return json.loads(text)
    except RecursionError:
        raise JsonNestingError("JSON is nested too deeply") from None
    except ValueError as exc:
        raise JsonSyntaxError(f"invalid JSON: {exc}") from None
