"""nodes.protocol.hashing: message hashes as the storage server computes them."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import SessionID

pytestmark = pytest.mark.unit

# The storage server's network tests (network-tests/test_msg_ns.py) use "05" + an Ed25519 verify
# key as the account and expect base64(blake2b(b"\x05" + key + ns + data)) without padding.  The
# values below were computed with PyNaCl's libsodium blake2b (an implementation independent of
# hashlib) for the key of SigningKey(bytes(range(32))).
KEY = SigningKey(bytes(range(32))).verify_key.encode()
ACCOUNT = "05" + KEY.hex()


@pytest.mark.parametrize(
    "namespace,data,expected",
    [
        (40, b"abc 123", "YvS9lqyqRXv+lb1q0AdCHzJ22GEMpXownDIsVwxAArg"),
        (-42, b"abc 123", "Xvot3idOBMt7HIjVFXez5f33BYUVxAy5ej/yQYcZwxA"),
        (-10, b"blah blah", "KtSskmxKnFMVm5HHqfRyAw6XdBBPtQKKAWi8AF2ZFY0"),
        (0, b"hello", "yHGmfX9ulw8xra2A5nanC/FYLnccNRzyWYheBKsH/Nw"),
    ],
)
def test_known_hashes(namespace, data, expected):
    assert message_hash(ACCOUNT, namespace, data) == expected
    assert message_hash(SessionID.parse(ACCOUNT), namespace, data) == expected


def test_hash_shape_and_namespace_zero_has_empty_ns_string():
    h = message_hash(ACCOUNT, 0, b"hello")
    assert len(h) == 43 and not h.endswith("=")
    # namespace 0 contributes "" (not "0"), so it differs from namespace 10's "10" prefix trick
    assert message_hash(ACCOUNT, 0, b"0hello") != h
    assert message_hash(ACCOUNT, 1, b"hello") == message_hash(ACCOUNT, 0, b"1hello")


def test_hash_depends_on_prefix_and_data():
    h05 = message_hash("05" + KEY.hex(), 0, b"x")
    h03 = message_hash("03" + KEY.hex(), 0, b"x")
    assert h05 != h03
    assert message_hash(ACCOUNT, 0, b"x") != message_hash(ACCOUNT, 0, b"y")


def test_hash_rejects_bad_input():
    with pytest.raises(ValueError):
        message_hash("05" + "00" * 31, 0, b"x")
    with pytest.raises(ValueError):
        message_hash(ACCOUNT, 40000, b"x")
