"""Per-testnet secrets: where processes read them, and how requests prove them.

A testnet has three secrets, none of which ever appears on a command line (``ps`` shows argv
to every local user):

* the **admin token**: bearer token of the seed's and every node's admin endpoints;
* the **join token**: bearer token a node sends with its proofs, so only the testnet's own
  nodes can register at the seed; derived from the admin token (one-way), so a node that holds
  the join token cannot call admin endpoints with it;
* the **testnet seed** and the **key seeds** derived from it: a node's Ed25519 key.

Each is read from a file named on the command line (``--admin-token-file PATH``; the path is
not secret, the file should be mode 0600) or from an environment variable (the harness's way:
``/proc/PID/environ`` is readable by the process's owner only).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

ENV_ADMIN_TOKEN = "SESSION_TESTNET_ADMIN_TOKEN"
ENV_JOIN_TOKEN = "SESSION_TESTNET_JOIN_TOKEN"
ENV_KEY_SEED = "SESSION_TESTNET_KEY_SEED"
ENV_TESTNET_SEED = "SESSION_TESTNET_SEED"


class SecretError(ValueError):
    """A secret file could not be read; the message names the flag and the file."""


def derive_join_token(admin_token: str) -> str:
    """The testnet's join token: BLAKE2b keyed with the admin token (not reversible)."""
    return hashlib.blake2b(b"session-testnet/join", key=admin_token.encode()[:64],
                           digest_size=16).hexdigest()


def read_secret(path: Path | str | None, env: str, flag: str, *, default: str = "") -> str:
    """The secret in ``path`` (stripped), else ``$env``, else ``default``."""
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise SecretError(f"{flag} {path}: cannot read the secret ({e})") from None
    return os.environ.get(env, default).strip()


def bearer_ok(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant-time compare).
    An empty ``token`` matches nothing."""
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def bearer(token: str) -> dict[str, str]:
    """The request header that proves ``token``."""
    return {"Authorization": f"Bearer {token}"}
