"""Protocol constants shared by the seed, the storage node and the client.

Values follow the production Session storage server (session-foundation/session-storage-server,
formerly oxen-io/oxen-storage-server); see PROTOCOL.md for the wire contract.
"""

from __future__ import annotations

# --- ports -------------------------------------------------------------------------------------
STORAGE_PORT = 22021  # HTTPS storage RPC + onion requests
LMQ_PORT = 22020  # OxenMQ/QUIC port advertised as storage_lmq_port (not served by the testnet)
ADMIN_PORT = 22030  # testnet-only plain-HTTP admin interface of a storage node
SEED_PORT = 22023  # seed (oxend stand-in) JSON-RPC over HTTP
SEED_HTTPS_PORT = 22024  # same JSON-RPC app over HTTPS (self-signed)

# --- sizes -------------------------------------------------------------------------------------
MAX_MESSAGE_DATA = 76_800  # max decoded bytes of a store's `data` (storage server MAX_MESSAGE_BODY)
MAX_REQUEST_BODY = 10 * 1024 * 1024  # max HTTP request body (413 above it)

# --- time --------------------------------------------------------------------------------------
_SECOND_MS = 1000
_DAY_MS = 24 * 60 * 60 * _SECOND_MS
TTL_MIN_MS = 10 * _SECOND_MS
TTL_MAX_PUBLIC_MS = 14 * _DAY_MS
TTL_MAX_PRIVATE_MS = 30 * _DAY_MS
CLOCK_TOLERANCE_MS = 10 * _SECOND_MS  # store timestamp may be at most this far in the future
SIGNATURE_WINDOW_MS = 60 * _SECOND_MS  # signed timestamps must be within ±this of server time

# --- versions ----------------------------------------------------------------------------------
# HARDFORK is what every storage RPC response carries as "hf": [major, minor] (oxend's
# [hardfork, snode revision]).  Sources:
#   * oxen-core cryptonote_config.h: the last hard fork in the enum is hf21_eth (21, the Session
#     Network / ETH transition that mainnet runs on).
#   * session-desktop's handleHardforkResult (snode_api hard-fork handling) only checks
#     `hf[0] >= 19 && hf[1] >= 0` (HF 19.0) and `hf[0] >= 19 && hf[1] >= 1` (HF 19.1) -- note the
#     minor is compared on its own, so a minor of 0 would never flag "19.1 seen".  (21, 1) passes
#     both checks.  The exact current mainnet revision is not in the searchable sources; any
#     (>=19, >=1) value is accepted by current clients.
# STORAGE_SERVER_VERSION is what get_service_nodes reports as storage_server_version.  Sources:
#   * session-foundation/session-storage-server CMakeLists.txt: `project(oxenss VERSION 2.11.3)`.
#   * libsession-util onion_request_router picks the last path hop among nodes with
#     storage_server_version >= 2.8.0 (min_final_node_version); service_node::from_json accepts
#     the version as a [major, minor, patch] array or a "x.y.z" string.
#   * oxen-core MIN_UPTIME_PROOF_VERSIONS required >= 2.6.1 already at HF 19.4.
HARDFORK: tuple[int, int] = (21, 1)
STORAGE_SERVER_VERSION: tuple[int, int, int] = (2, 11, 3)

# --- namespaces --------------------------------------------------------------------------------
NAMESPACE_MIN = -32768
NAMESPACE_MAX = 32767
NAMESPACE_DEFAULT = 0
NAMESPACE_LEGACY_CLOSED_GROUP = -10  # the one namespace that needs no auth at all


def validate_namespace(ns: int) -> int:
    """Return `ns` if it is a valid namespace (int16), else raise ValueError."""
    if isinstance(ns, bool) or not isinstance(ns, int):
        raise ValueError(f"invalid namespace {ns!r}: expected an integer in [-32768, 32767]")
    if not NAMESPACE_MIN <= ns <= NAMESPACE_MAX:
        raise ValueError(f"invalid namespace {ns}: must be within the int16 range [-32768, 32767]")
    return ns


def is_public_namespace(ns: int) -> bool:
    """Public namespaces (divisible by 10) accept unauthenticated stores."""
    return ns % 10 == 0


def namespace_store_needs_auth(ns: int) -> bool:
    """Does a `store` into `ns` need a signature?  No for ns % 10 == 0 and for -10."""
    return not (ns % 10 == 0 or ns == NAMESPACE_LEGACY_CLOSED_GROUP)


def namespace_read_needs_auth(ns: int) -> bool:
    """Does `retrieve` (and any other non-store op) on `ns` need a signature?  Only -10 is open.

    (Current storage servers additionally allow unauthenticated retrieval from "public outbox"
    namespaces -(20n+1) such as -1 and -21; the testnet follows PROTOCOL.md and keeps those
    authenticated.)
    """
    return ns != NAMESPACE_LEGACY_CLOSED_GROUP


def max_ttl_ms(ns: int) -> int:
    """Longest allowed TTL for a new message stored in `ns`.

    Storage server oxenss/common/ttl.h: TTL_MAXIMUM (14 days) for public namespaces, and
    TTL_MAXIMUM_PRIVATE (30 days) for private ones.  (The server also allows 30 days when an
    owner extends the expiry of an existing message in any namespace.)
    """
    return TTL_MAX_PUBLIC_MS if is_public_namespace(ns) else TTL_MAX_PRIVATE_MS
