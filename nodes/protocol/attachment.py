"""Session attachment encryption (what session-desktop does before an upload to the file server).

Production (session-desktop ``AttachmentsV2`` upload, ``encryptAttachment`` /
``decryptAttachment`` of its crypto module, ``addAttachmentPadding`` / ``getUnpaddedAttachment``
of ``BufferPadding``):

1. **Key**: 64 random bytes per attachment — ``key[:32]`` is the AES-256-CBC key, ``key[32:]``
   the HMAC-SHA256 key. It travels in the message's ``AttachmentPointer.key``.
2. **Padding** (hides the size): the plaintext is followed by zero bytes up to
   ``max(541, floor(1.05 ** ceil(log(n) / log(1.05))))`` bytes, capped at the 10 MB limit when
   the bucket would exceed it for a plaintext that fits. ``AttachmentPointer.size`` is the
   *unpadded* size; the receiver keeps the first ``size`` bytes.
3. **Encryption**: ``IV`` = 16 random bytes; ``C = AES-256-CBC(aes_key, IV, PKCS#7(padded))``;
   ``MAC = HMAC-SHA256(mac_key, IV ‖ C)`` (all 32 bytes); the blob uploaded is
   ``IV ‖ C ‖ MAC``.
4. **Digest**: ``SHA-256(IV ‖ C ‖ MAC)``, carried in ``AttachmentPointer.digest``.
5. **Decryption** checks, in production's order, the blob's length (≥ 16 + 32) and the key's
   (64), then the MAC (constant time), then the digest, then decrypts and strips PKCS#7, then
   keeps ``size`` bytes.

The 10 MB limit (``MAX_ATTACHMENT_BYTES``) is desktop's ``MAX_ATTACHMENT_FILESIZE_BYTES``: "the
file server and onion request max upload size is 10MB precisely; 10MB is still ok, but one byte
more is not". It applies to the plaintext a client accepts to send.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding as pkcs7
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_BYTES = 64
AES_KEY_BYTES = 32
IV_BYTES = 16
MAC_BYTES = 32
DIGEST_BYTES = 32
AES_BLOCK_BITS = 128

MAX_ATTACHMENT_BYTES = 10 * 1000 * 1000
MIN_PADDED_BYTES = 541
PADDING_GROWTH = 1.05


class AttachmentError(ValueError):
    """An attachment cannot be encrypted, verified or decrypted."""


@dataclass(frozen=True)
class EncryptedAttachment:
    """What an upload carries (``blob``) and what the message's pointer needs."""

    blob: bytes
    key: bytes
    digest: bytes
    size: int

    @property
    def padded_size(self) -> int:
        """Length of the padded plaintext inside the blob (before PKCS#7)."""
        return padded_attachment_length(self.size)


def padded_attachment_length(n: int) -> int:
    """Production's size bucket for an ``n``-byte plaintext (≥ 541 bytes, 5 % steps)."""
    if n < 0:
        raise AttachmentError(f"attachment size must be ≥ 0, got {n}")
    if n <= 1:  # log(0) is undefined and log(1) = 0: both land in the smallest bucket
        return MIN_PADDED_BYTES
    bucket = math.floor(PADDING_GROWTH ** math.ceil(math.log(n) / math.log(PADDING_GROWTH)))
    size = max(MIN_PADDED_BYTES, bucket)
    if size > MAX_ATTACHMENT_BYTES >= n:
        size = MAX_ATTACHMENT_BYTES
    return max(size, n)


def pad_attachment(data: bytes) -> bytes:
    """``data`` followed by zero bytes up to :func:`padded_attachment_length`."""
    data = bytes(data)
    return data + bytes(padded_attachment_length(len(data)) - len(data))


def unpad_attachment(data: bytes, size: int) -> bytes:
    """The first ``size`` bytes of a padded plaintext (what follows is padding, whatever it is)."""
    if size < 0 or size > len(data):
        raise AttachmentError(
            f"attachment size {size} does not fit the decrypted data ({len(data)} bytes): "
            "the pointer's size field is wrong")
    return bytes(data[:size])


def encrypted_blob_length(n: int) -> int:
    """Bytes uploaded for an ``n``-byte plaintext: IV, the padded size rounded up by PKCS#7
    (always at least one byte of it), MAC."""
    block = AES_BLOCK_BITS // 8
    return IV_BYTES + (padded_attachment_length(n) // block + 1) * block + MAC_BYTES


def largest_plaintext_within(blob_limit: int) -> int:
    """The largest plaintext whose encrypted blob is at most ``blob_limit`` bytes (a file
    server's size limit applies to the blob); -1 if not even an empty one fits."""
    lo, hi = -1, MAX_ATTACHMENT_BYTES
    while lo < hi:  # encrypted_blob_length is non-decreasing in n
        mid = (lo + hi + 1) // 2
        if encrypted_blob_length(mid) <= blob_limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def new_key() -> bytes:
    """A fresh 64-byte attachment key (AES key ‖ MAC key)."""
    return os.urandom(KEY_BYTES)


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise AttachmentError(
            f"attachment key must be {KEY_BYTES} bytes (AES-256 key + HMAC-SHA256 key), "
            f"got {len(key)}")


def encrypt_blob(plaintext: bytes, key: bytes, iv: bytes) -> tuple[bytes, bytes]:
    """``(IV ‖ AES-256-CBC(PKCS#7(plaintext)) ‖ HMAC, SHA-256 digest of that blob)``.

    No padding to size buckets here: :func:`encrypt_attachment` adds it.
    """
    _check_key(key)
    if len(iv) != IV_BYTES:
        raise AttachmentError(f"attachment IV must be {IV_BYTES} bytes, got {len(iv)}")
    padder = pkcs7.PKCS7(AES_BLOCK_BITS).padder()
    block_padded = padder.update(bytes(plaintext)) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key[:AES_KEY_BYTES]), modes.CBC(iv)).encryptor()
    iv_and_ciphertext = bytes(iv) + encryptor.update(block_padded) + encryptor.finalize()
    mac = hmac.new(key[AES_KEY_BYTES:], iv_and_ciphertext, hashlib.sha256).digest()
    blob = iv_and_ciphertext + mac
    return blob, hashlib.sha256(blob).digest()


def decrypt_blob(blob: bytes, key: bytes, digest: bytes | None) -> bytes:
    """Verify the MAC, then the digest (when given), and decrypt; padding to buckets is kept."""
    blob = bytes(blob)
    _check_key(key)
    if len(blob) < IV_BYTES + MAC_BYTES:
        raise AttachmentError(
            f"attachment blob too short ({len(blob)} bytes; at least {IV_BYTES + MAC_BYTES}): "
            "not an encrypted attachment")
    iv_and_ciphertext, mac = blob[:-MAC_BYTES], blob[-MAC_BYTES:]
    expected = hmac.new(key[AES_KEY_BYTES:], iv_and_ciphertext, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise AttachmentError("attachment MAC does not verify: the blob was modified or the key "
                              "is not the one it was encrypted with")
    if digest is not None and not hmac.compare_digest(hashlib.sha256(blob).digest(), bytes(digest)):
        raise AttachmentError("attachment digest does not match: the downloaded blob is not the "
                              "one the sender uploaded")
    ciphertext = iv_and_ciphertext[IV_BYTES:]
    if not ciphertext or len(ciphertext) % (AES_BLOCK_BITS // 8):
        raise AttachmentError(
            f"attachment ciphertext is {len(ciphertext)} bytes, not a positive multiple of 16")
    decryptor = Cipher(algorithms.AES(key[:AES_KEY_BYTES]),
                       modes.CBC(iv_and_ciphertext[:IV_BYTES])).decryptor()
    block_padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = pkcs7.PKCS7(AES_BLOCK_BITS).unpadder()
    try:
        return unpadder.update(block_padded) + unpadder.finalize()
    except ValueError:
        raise AttachmentError("attachment has invalid PKCS#7 padding after decryption") from None


def encrypt_attachment(plaintext: bytes, *, key: bytes | None = None,
                       iv: bytes | None = None) -> EncryptedAttachment:
    """Pad to the size bucket and encrypt, as desktop does for a file-server upload.

    ``key`` and ``iv`` are random unless given (tests pin them).
    """
    plaintext = bytes(plaintext)
    if len(plaintext) > MAX_ATTACHMENT_BYTES:
        raise AttachmentError(
            f"attachment is {len(plaintext)} bytes, over Session's limit of "
            f"{MAX_ATTACHMENT_BYTES} bytes (10 MB)")
    key = new_key() if key is None else bytes(key)
    iv = os.urandom(IV_BYTES) if iv is None else bytes(iv)
    blob, digest = encrypt_blob(pad_attachment(plaintext), key, iv)
    return EncryptedAttachment(blob=blob, key=key, digest=digest, size=len(plaintext))


def decrypt_attachment(blob: bytes, *, key: bytes, digest: bytes | None, size: int | None) -> bytes:
    """Verify and decrypt a downloaded blob; ``size`` (the pointer's) removes the padding.

    Desktop accepts a pointer without a digest; callers that require one pass it (the harness
    client always does).  Without ``size`` the padded plaintext is returned.
    """
    padded = decrypt_blob(blob, key, digest)
    return padded if size is None else unpad_attachment(padded, size)
