"""Session 1-to-1 message encryption (PROTOCOL.md §7).

What production does (session-desktop ``MessageSender``/``MessageEncrypter`` and
``BufferPadding``; libsession-util session protocol):

1. ``Content`` protobuf, padded (``addMessagePadding``): ``M ‖ 0x80 ‖ 0x00…`` to a total length of
   ``160·k − 1`` for the smallest ``k`` with ``160·k ≥ len(M) + 2``.  Unpadding
   (``removeMessagePadding``) strips trailing zeros and the ``0x80``; desktop lets a message with
   no padding through unchanged (``strict=False`` here does the same).
2. ``SIG = Ed25519(padded ‖ sender_ed25519_pk ‖ recipient_x25519_pk)``.
3. ``C = crypto_box_seal(padded ‖ sender_ed25519_pk ‖ SIG, recipient_x25519_pk)``.
4. ``Envelope{type=SESSION_MESSAGE, timestamp, content=C}`` — desktop's ``buildEnvelope`` sets
   ``source`` only for ``CLOSED_GROUP_MESSAGE``, so 1-to-1 envelopes carry no source — inside
   ``WebSocketRequestMessage{id=0, verb="PUT", path="/api/v1/message", body}`` inside
   ``WebSocketMessage{type=REQUEST}``.  Those serialized bytes, base64-encoded, are the ``data`` of
   a ``store`` in namespace 0.  ``DataMessage.timestamp`` is the message's sent timestamp (desktop
   sets it and the envelope timestamp to the same network timestamp).
5. The receiver opens the box with its X25519 keypair, verifies ``SIG`` against its own X25519
   key, and the sender's Session ID is ``05`` + hex(X25519 of the sender's Ed25519 key).

The protobuf classes are built at import time from a ``FileDescriptorProto`` (proto2, package
``signalservice``, field numbers of Session's SignalService.proto) in a private descriptor pool.
A ``DataMessage`` carries attachments as ``AttachmentPointer``s (field 2; the pointer's fields
with production's numbers, ``id`` a fixed64 and ``url`` 101); ``AttachmentRef`` holds the ones a
client uses, and ``nodes.protocol.attachment`` encrypts what they point to.
Only the fields the testnet needs are declared; unknown fields from real clients are kept by
protobuf and ignored here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from nacl import bindings
from nacl.exceptions import CryptoError

from .keys import PREFIX_X25519, Identity, SessionID, ed25519_pk_to_x25519, verify_ed25519

PADDING_BLOCK = 160
PADDING_START = 0x80
ED25519_PK_BYTES = 32
SIGNATURE_BYTES = 64

WEBSOCKET_VERB = "PUT"
WEBSOCKET_PATH = "/api/v1/message"


class MessageError(ValueError):
    """A Session message cannot be built, decrypted, verified or parsed."""


# --- protobuf classes, built from descriptors --------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg: descriptor_pb2.DescriptorProto, name: str, number: int, ftype: int,
           type_name: str | None = None, repeated: bool = False) -> None:
    f = msg.field.add()
    f.name = name
    f.number = number
    f.type = ftype  # type: ignore[assignment]  # protobuf's enum ValueType is an int at run time
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name


def _enum(msg: descriptor_pb2.DescriptorProto, name: str, values: dict[str, int]) -> None:
    e = msg.enum_type.add()
    e.name = name
    for vname, number in values.items():
        v = e.value.add()
        v.name = vname
        v.number = number


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto()
    fd.name = "session_testnet/signalservice.proto"
    fd.package = "signalservice"
    fd.syntax = "proto2"

    m = fd.message_type.add()
    m.name = "WebSocketRequestMessage"
    _field(m, "verb", 1, _F.TYPE_STRING)
    _field(m, "path", 2, _F.TYPE_STRING)
    _field(m, "body", 3, _F.TYPE_BYTES)
    _field(m, "id", 4, _F.TYPE_UINT64)
    _field(m, "headers", 5, _F.TYPE_STRING, repeated=True)

    m = fd.message_type.add()
    m.name = "WebSocketMessage"
    _enum(m, "Type", {"UNKNOWN": 0, "REQUEST": 1, "RESPONSE": 2})
    _field(m, "type", 1, _F.TYPE_ENUM, ".signalservice.WebSocketMessage.Type")
    _field(m, "request", 2, _F.TYPE_MESSAGE, ".signalservice.WebSocketRequestMessage")

    m = fd.message_type.add()
    m.name = "Envelope"
    _enum(m, "Type", {"SESSION_MESSAGE": 6, "CLOSED_GROUP_MESSAGE": 7})
    _field(m, "type", 1, _F.TYPE_ENUM, ".signalservice.Envelope.Type")
    _field(m, "source", 2, _F.TYPE_STRING)
    _field(m, "timestamp", 5, _F.TYPE_UINT64)
    _field(m, "content", 8, _F.TYPE_BYTES)

    m = fd.message_type.add()
    m.name = "LokiProfile"
    _field(m, "displayName", 1, _F.TYPE_STRING)
    _field(m, "profilePicture", 2, _F.TYPE_STRING)

    m = fd.message_type.add()
    m.name = "AttachmentPointer"
    _enum(m, "Flags", {"VOICE_MESSAGE": 1})
    _field(m, "id", 1, _F.TYPE_FIXED64)
    _field(m, "contentType", 2, _F.TYPE_STRING)
    _field(m, "key", 3, _F.TYPE_BYTES)
    _field(m, "size", 4, _F.TYPE_UINT32)
    _field(m, "thumbnail", 5, _F.TYPE_BYTES)
    _field(m, "digest", 6, _F.TYPE_BYTES)
    _field(m, "fileName", 7, _F.TYPE_STRING)
    _field(m, "flags", 8, _F.TYPE_UINT32)
    _field(m, "width", 9, _F.TYPE_UINT32)
    _field(m, "height", 10, _F.TYPE_UINT32)
    _field(m, "caption", 11, _F.TYPE_STRING)
    _field(m, "url", 101, _F.TYPE_STRING)

    m = fd.message_type.add()
    m.name = "DataMessage"
    _field(m, "body", 1, _F.TYPE_STRING)
    _field(m, "attachments", 2, _F.TYPE_MESSAGE, ".signalservice.AttachmentPointer", repeated=True)
    _field(m, "timestamp", 7, _F.TYPE_UINT64)
    _field(m, "profile", 101, _F.TYPE_MESSAGE, ".signalservice.LokiProfile")

    m = fd.message_type.add()
    m.name = "Content"
    _field(m, "dataMessage", 1, _F.TYPE_MESSAGE, ".signalservice.DataMessage")
    return fd


def _build_classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_build_file())
    names = ("WebSocketRequestMessage", "WebSocketMessage", "Envelope", "LokiProfile",
             "AttachmentPointer", "DataMessage", "Content")
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"signalservice.{n}"))
            for n in names}


_CLASSES = _build_classes()
WebSocketRequestMessage = _CLASSES["WebSocketRequestMessage"]
WebSocketMessage = _CLASSES["WebSocketMessage"]
Envelope = _CLASSES["Envelope"]
LokiProfile = _CLASSES["LokiProfile"]
AttachmentPointer = _CLASSES["AttachmentPointer"]
DataMessage = _CLASSES["DataMessage"]
Content = _CLASSES["Content"]

WEBSOCKET_TYPE_REQUEST = WebSocketMessage.Type.Value("REQUEST")
ENVELOPE_SESSION_MESSAGE = Envelope.Type.Value("SESSION_MESSAGE")
ENVELOPE_CLOSED_GROUP_MESSAGE = Envelope.Type.Value("CLOSED_GROUP_MESSAGE")


# --- padding -----------------------------------------------------------------------------------

def padded_length(n: int) -> int:
    """Length of a padded message of ``n`` bytes: ``160·ceil((n + 2) / 160) − 1``."""
    return -(-(n + 2) // PADDING_BLOCK) * PADDING_BLOCK - 1


def pad(data: bytes) -> bytes:
    """``data ‖ 0x80 ‖ 0x00…`` up to ``padded_length(len(data))`` bytes."""
    data = bytes(data)
    total = padded_length(len(data))
    return data + bytes([PADDING_START]) + bytes(total - len(data) - 1)


def unpad(data: bytes, *, strict: bool = False) -> bytes:
    """Remove ``0x80 0x00…`` padding.

    Like session-desktop, data whose last non-zero byte is not 0x80 is returned unchanged unless
    ``strict``; data with no non-zero byte at all is an error.
    """
    data = bytes(data)
    end = len(data.rstrip(b"\x00"))
    if end == 0:
        raise MessageError("Invalid padding: message is empty or all zero bytes")
    if data[end - 1] == PADDING_START:
        return data[:end - 1]
    if strict:
        raise MessageError("Invalid padding: no 0x80 terminator before the trailing zero bytes")
    return data


# --- attachment pointers -----------------------------------------------------------------------

@dataclass(frozen=True)
class AttachmentRef:
    """The fields of an ``AttachmentPointer`` a client needs to fetch and open an attachment.

    ``file_id`` is the file server's id (``AttachmentPointer.id``, fixed64), ``url`` where to
    download it, ``key`` the 64-byte attachment key, ``digest`` SHA-256 of the uploaded blob,
    ``size`` the unpadded plaintext size (see nodes.protocol.attachment).
    """

    file_id: int
    url: str
    key: bytes
    digest: bytes
    size: int
    content_type: str | None = None
    file_name: str | None = None

    def to_proto(self) -> Any:
        pointer = AttachmentPointer()
        pointer.id = self.file_id
        pointer.url = self.url
        pointer.key = self.key
        pointer.digest = self.digest
        pointer.size = self.size
        if self.content_type is not None:
            pointer.contentType = self.content_type
        if self.file_name is not None:
            pointer.fileName = self.file_name
        return pointer

    @classmethod
    def from_proto(cls, pointer: Any) -> AttachmentRef:
        def opt(name: str) -> Any:
            return getattr(pointer, name) if pointer.HasField(name) else None
        return cls(file_id=pointer.id, url=pointer.url, key=bytes(pointer.key),
                   digest=bytes(pointer.digest), size=pointer.size,
                   content_type=opt("contentType"), file_name=opt("fileName"))


def _check_attachment(ref: AttachmentRef) -> None:
    if not 0 <= ref.file_id < 2 ** 64:
        raise MessageError(f"attachment id must fit a fixed64, got {ref.file_id}")
    if not 0 <= ref.size < 2 ** 32:
        raise MessageError(f"attachment size must fit a uint32, got {ref.size}")


# --- encryption --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceivedMessage:
    sender: str
    body: str
    timestamp_ms: int
    envelope_timestamp_ms: int
    display_name: str | None
    attachments: tuple[AttachmentRef, ...] = ()


def _recipient_key(recipient: SessionID | str) -> bytes:
    try:
        sid = recipient if isinstance(recipient, SessionID) else SessionID.parse(recipient)
    except ValueError as exc:
        raise MessageError(f"invalid recipient: {exc}") from None
    if sid.prefix != PREFIX_X25519:
        raise MessageError(
            f"1-to-1 messages need a 05 Session ID (X25519 key), got prefix {sid.prefix:02x}")
    return sid.key


def encrypt_message(
    sender: Identity,
    recipient: SessionID | str,
    body: str,
    *,
    timestamp_ms: int,
    display_name: str | None = None,
    attachments: Sequence[AttachmentRef] = (),
) -> bytes:
    """Build the serialized ``WebSocketMessage`` a client base64-encodes into ``store`` data.

    ``attachments`` become the ``DataMessage``'s ``AttachmentPointer``s, in order.
    """
    recipient_x = _recipient_key(recipient)
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms < 0:
        raise MessageError(f"timestamp_ms must be a non-negative integer, got {timestamp_ms!r}")

    content = Content()
    content.dataMessage.body = body
    content.dataMessage.timestamp = timestamp_ms
    if display_name is not None:
        content.dataMessage.profile.displayName = display_name
    for ref in attachments:
        _check_attachment(ref)
        content.dataMessage.attachments.append(ref.to_proto())
    padded = pad(content.SerializeToString())

    signature = sender.sign(padded + sender.ed25519_public + recipient_x)
    sealed = bindings.crypto_box_seal(padded + sender.ed25519_public + signature, recipient_x)

    envelope = Envelope()
    envelope.type = ENVELOPE_SESSION_MESSAGE
    envelope.timestamp = timestamp_ms
    envelope.content = sealed

    request = WebSocketRequestMessage()
    request.id = 0
    request.verb = WEBSOCKET_VERB
    request.path = WEBSOCKET_PATH
    request.body = envelope.SerializeToString()

    wsm = WebSocketMessage()
    wsm.type = WEBSOCKET_TYPE_REQUEST
    wsm.request.CopyFrom(request)
    data: bytes = wsm.SerializeToString()
    return data


def _parse(cls: Any, data: bytes, what: str) -> Any:
    msg = cls()
    try:
        msg.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise MessageError(f"{what} is not a valid protobuf: {exc}") from None
    return msg


def decrypt_message(recipient: Identity, data: bytes) -> ReceivedMessage:
    """Parse, open, verify and decode a stored 1-to-1 message addressed to ``recipient``."""
    wsm = _parse(WebSocketMessage, data, "WebSocketMessage")
    if not wsm.HasField("request") or not wsm.request.HasField("body"):
        raise MessageError("WebSocketMessage has no request body (not a Session message)")
    envelope = _parse(Envelope, wsm.request.body, "Envelope")
    if not envelope.HasField("content") or not envelope.content:
        raise MessageError("Envelope has no content")
    if envelope.type != ENVELOPE_SESSION_MESSAGE:
        raise MessageError(f"unsupported envelope type {envelope.type} (expected SESSION_MESSAGE = 6)")

    try:
        plaintext = bindings.crypto_box_seal_open(
            envelope.content, recipient.x25519_public, recipient.x25519_secret)
    except (CryptoError, ValueError, TypeError):
        raise MessageError("could not decrypt the message: it is not sealed for this recipient "
                           "or the ciphertext was modified") from None

    if len(plaintext) < ED25519_PK_BYTES + SIGNATURE_BYTES:
        raise MessageError(f"decrypted message too short ({len(plaintext)} bytes)")
    padded = plaintext[:-(ED25519_PK_BYTES + SIGNATURE_BYTES)]
    sender_ed = plaintext[-(ED25519_PK_BYTES + SIGNATURE_BYTES):-SIGNATURE_BYTES]
    signature = plaintext[-SIGNATURE_BYTES:]
    if not verify_ed25519(sender_ed, padded + sender_ed + recipient.x25519_public, signature):
        raise MessageError("invalid message signature: the sender's Ed25519 signature does not verify")
    try:
        sender_x = ed25519_pk_to_x25519(sender_ed)
    except ValueError as exc:
        raise MessageError(f"invalid sender key: {exc}") from None

    content = _parse(Content, unpad(padded), "Content")
    if not content.HasField("dataMessage"):
        raise MessageError("Content has no dataMessage (not a visible 1-to-1 message)")
    dm = content.dataMessage
    display_name = dm.profile.displayName if dm.HasField("profile") and dm.profile.HasField(
        "displayName") else None
    return ReceivedMessage(
        sender=f"{PREFIX_X25519:02x}{sender_x.hex()}",
        body=dm.body,
        timestamp_ms=dm.timestamp,
        envelope_timestamp_ms=envelope.timestamp,
        display_name=display_name,
        attachments=tuple(AttachmentRef.from_proto(p) for p in dm.attachments),
    )
