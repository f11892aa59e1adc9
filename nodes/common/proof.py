"""The proof a storage node sends to the seed (docs/DESIGN.md "Seed", ``POST /internal/v1/proof``).

The signature is Ed25519 by ``pubkey_ed25519`` over
``"proof" ‖ pubkey_ed25519 ‖ public_ip ‖ storage_port ‖ timestamp`` (ASCII, decimal integers).
The node signs with :func:`build_proof`; the seed checks with :func:`proof_message`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from nodes.protocol.constants import STORAGE_SERVER_VERSION
from nodes.protocol.keys import Identity

PROOF_PATH = "/internal/v1/proof"


def proof_message(pubkey_ed25519: str, public_ip: str, storage_port: int, timestamp_ms: int) -> bytes:
    """The bytes a node signs in a proof."""
    return f"proof{pubkey_ed25519}{public_ip}{storage_port}{timestamp_ms}".encode("ascii")


def build_proof(identity: Identity, *, public_ip: str, storage_port: int, storage_lmq_port: int,
                admin_port: int, timestamp_ms: int,
                version: Sequence[int] = STORAGE_SERVER_VERSION) -> dict[str, Any]:
    """A signed body for ``POST /internal/v1/proof``."""
    sig = identity.sign(proof_message(identity.ed25519_hex, public_ip, storage_port, timestamp_ms))
    return {"pubkey_ed25519": identity.ed25519_hex, "pubkey_x25519": identity.x25519_hex,
            "public_ip": public_ip, "storage_port": storage_port, "storage_lmq_port": storage_lmq_port,
            "admin_port": admin_port, "version": list(version), "timestamp": timestamp_ms,
            "signature": base64.b64encode(sig).decode("ascii")}
