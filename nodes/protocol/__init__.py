"""The wire-protocol library shared by the seed, the storage node and the client.

Swarm helpers live in :mod:`nodes.protocol.swarm`; import them from there (not re-exported here
so that this package never depends on that module being importable).
"""

from .constants import (
    ADMIN_PORT,
    CLOCK_TOLERANCE_MS,
    HARDFORK,
    LMQ_PORT,
    MAX_MESSAGE_DATA,
    MAX_REQUEST_BODY,
    SEED_HTTPS_PORT,
    SEED_PORT,
    SIGNATURE_WINDOW_MS,
    STORAGE_PORT,
    STORAGE_SERVER_VERSION,
    TTL_MAX_PRIVATE_MS,
    TTL_MAX_PUBLIC_MS,
    TTL_MIN_MS,
    max_ttl_ms,
    namespace_read_needs_auth,
    namespace_store_needs_auth,
    validate_namespace,
)
from .hashing import message_hash
from .keys import Identity, SessionID, derive_seed, ed25519_pk_to_x25519, verify_ed25519
from .message import (
    MessageError,
    ReceivedMessage,
    decrypt_message,
    encrypt_message,
    pad,
    unpad,
)
from .onion import (
    ENC_AES_GCM,
    ENC_XCHACHA20,
    OnionError,
    OnionHop,
    OnionRequest,
    PeeledLayer,
    RelayInfo,
    build_onion_request,
    decode_frame,
    decrypt_layer,
    decrypt_onion_response,
    encode_frame,
    encrypt_layer,
    encrypt_response,
    layer_key,
    parse_enc_type,
    peel_layer,
    relay_info,
    shared_secret,
)
from .signing import (
    SignatureError,
    delete_all_message,
    delete_before_message,
    delete_message,
    expire_all_message,
    expire_message,
    get_expiries_message,
    namespace_str,
    retrieve_message,
    sign_request,
    store_message,
    verify_request,
)

__all__ = [
    "ADMIN_PORT", "CLOCK_TOLERANCE_MS", "HARDFORK", "LMQ_PORT", "MAX_MESSAGE_DATA",
    "MAX_REQUEST_BODY", "SEED_HTTPS_PORT", "SEED_PORT", "SIGNATURE_WINDOW_MS", "STORAGE_PORT",
    "STORAGE_SERVER_VERSION", "TTL_MAX_PRIVATE_MS", "TTL_MAX_PUBLIC_MS", "TTL_MIN_MS",
    "max_ttl_ms", "namespace_read_needs_auth", "namespace_store_needs_auth", "validate_namespace",
    "message_hash",
    "Identity", "SessionID", "derive_seed", "ed25519_pk_to_x25519", "verify_ed25519",
    "SignatureError", "delete_all_message", "delete_before_message", "delete_message",
    "expire_all_message", "expire_message", "get_expiries_message", "namespace_str",
    "retrieve_message", "sign_request", "store_message", "verify_request",
    "ENC_AES_GCM", "ENC_XCHACHA20", "OnionError", "OnionHop", "OnionRequest", "PeeledLayer",
    "RelayInfo", "build_onion_request", "decode_frame", "decrypt_layer", "decrypt_onion_response",
    "encode_frame", "encrypt_layer", "encrypt_response", "layer_key", "parse_enc_type",
    "peel_layer", "relay_info", "shared_secret",
    "MessageError", "ReceivedMessage", "decrypt_message", "encrypt_message", "pad", "unpad",
]
