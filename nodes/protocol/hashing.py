"""Message hashes (PROTOCOL.md §4).

``hash = base64(BLAKE2b-256(prefix_byte ‖ pubkey32 ‖ ns_str ‖ data))`` with the standard base64
alphabet and the ``=`` padding stripped (43 characters).  ``ns_str`` is empty for namespace 0 and
the decimal namespace otherwise; ``data`` is the *decoded* message bytes (not the base64 text).
This is the storage server's ``compute_hash_blake2b_b64``.
"""

from __future__ import annotations

import base64
import hashlib

from .constants import validate_namespace
from .keys import SessionID

HASH_B64_LEN = 43


def _ns_str(namespace: int) -> str:
    return "" if namespace == 0 else str(namespace)


def message_hash(pubkey: SessionID | str, namespace: int, data: bytes) -> str:
    """The 43-character message hash the storage server assigns to a stored message."""
    sid = pubkey if isinstance(pubkey, SessionID) else SessionID.parse(pubkey)
    validate_namespace(namespace)
    h = hashlib.blake2b(digest_size=32)
    h.update(sid.prefixed)
    h.update(_ns_str(namespace).encode("ascii"))
    h.update(bytes(data))
    return base64.b64encode(h.digest()).decode("ascii").rstrip("=")
