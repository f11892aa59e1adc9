"""Base64 as the storage server reads it (oxenc): standard or URL-safe alphabet, padding optional.

The one definition used by the storage node (message data, hashes, signatures), the protocol
library (subaccount tokens, request signatures) and the client.
"""

from __future__ import annotations

import base64
import re

_B64_CHARS = re.compile(r"^[A-Za-z0-9+/\-_]*={0,2}$")


def is_base64(s: str) -> bool:
    """oxenc::is_base64: base64 characters (either alphabet), at most two ``=`` of padding that
    complete a 4-character group, and no length that cannot encode whole bytes."""
    if not isinstance(s, str) or not _B64_CHARS.match(s):
        return False
    unpadded = s.rstrip("=")
    if len(unpadded) != len(s) and len(s) % 4 != 0:
        return False
    return len(unpadded) % 4 != 1


def b64decode_any(s: str) -> bytes:
    """Decode base64 in either alphabet, with or without padding (binascii.Error if invalid)."""
    s = s.rstrip("=").replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
