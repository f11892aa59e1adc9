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
# Rules of the storage server (oxenss/common/namespace.h, client_rpc_endpoints.h):
#   * public inbox  (ns % 10 == 0, e.g. 0, 10, -20): anyone may store; every other operation,
#     retrieval included, needs the owner's signature (except -10 and the public outboxes below);
#   * every other namespace needs a signature for all operations, storing included;
#   * -10 (legacy closed groups): no authentication at all;
#   * public outbox, negative -(20n+1) (-1, -21, -41, …): storing needs the owner's signature
#     (and a subaccount needs write *and* delete, as a store replaces the message held), anyone
#     may retrieve without a signature; it holds a single message, the newest by timestamp;
#   * unrevocable, negative ending in 11 (-11, -111, -211, …): a revoked (otherwise valid)
#     subaccount may still retrieve from it (groups leave a "you were removed" note there).
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


def is_public_inbox_namespace(ns: int) -> bool:
    """Public inboxes (divisible by 10) accept unauthenticated stores."""
    return ns % 10 == 0


is_public_namespace = is_public_inbox_namespace  # the name used before outboxes existed


def is_public_outbox_namespace(ns: int) -> bool:
    """Negative namespaces of the form -(20n+1): -1, -21, -41, …"""
    return ns < 0 and (-ns) % 20 == 1


def is_noauth_retrieve_namespace(ns: int) -> bool:
    """Namespaces anyone may retrieve from: -10 and the public outboxes."""
    return ns == NAMESPACE_LEGACY_CLOSED_GROUP or is_public_outbox_namespace(ns)


def is_unrevocable_namespace(ns: int) -> bool:
    """Negative namespaces ending in 11 (-11, -111, -12311): revoked subaccounts may retrieve."""
    return ns < 0 and (-ns) % 100 == 11


def namespace_store_needs_auth(ns: int) -> bool:
    """Does a `store` into `ns` need a signature?  Everywhere except the public inboxes
    (ns % 10 == 0, which includes -10)."""
    return not is_public_inbox_namespace(ns)


def namespace_read_needs_auth(ns: int) -> bool:
    """Does `retrieve` from `ns` need a signature?  Everywhere except -10 and the public outboxes
    -(20n+1).  (Every other operation always needs one.)"""
    return not is_noauth_retrieve_namespace(ns)


# --- group subaccounts -------------------------------------------------------------------------
# A subaccount token (oxenss/common/subaccount_token.h) is 36 bytes: network prefix (1) ‖
# permission flags (1) ‖ reserved (2) ‖ the subaccount's Ed25519 public key (32).
SUBACCOUNT_TOKEN_LENGTH = 36
SUBACCOUNT_READ = 0b0001  # retrieve, get_expiries (and related reads)
SUBACCOUNT_WRITE = 0b0010  # store in any namespace, extend expiries
SUBACCOUNT_DELETE = 0b0100  # delete*, expire_all, shorten expiries (and store to an outbox)
SUBACCOUNT_ANY_PREFIX = 0b1000  # valid for the same key under any network prefix
MAX_SUBACCOUNT_TOKENS = 50  # revoked tokens kept per account (the most recent ones)


def max_ttl_ms(ns: int) -> int:
    """Longest allowed TTL for a new message stored in `ns`.

    Storage server oxenss/common/ttl.h: TTL_MAXIMUM (14 days) for public namespaces, and
    TTL_MAXIMUM_PRIVATE (30 days) for private ones.  (The server also allows 30 days when an
    owner extends the expiry of an existing message in any namespace.)
    """
    return TTL_MAX_PUBLIC_MS if is_public_inbox_namespace(ns) else TTL_MAX_PRIVATE_MS
