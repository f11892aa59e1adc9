"""OxenMQ (oxen-mq 1.2.x) message framing, the part an oxend stand-in needs (no sockets here).

On a ZeroMQ ROUTER socket every message starts with the peer's routing id, then one frame per
item:

* ``HI`` → answer ``HELLO`` (an OxenMQ connection counts as up only after HELLO); ``BYE`` → nothing;
* a request ``CMD, TAG, data...`` → ``REPLY, TAG, data...``;
* a command the stand-in does not know → ``UNKNOWNCOMMAND, CMD``;
* a push to a subscriber: ``CMD, data...`` (e.g. ``notify.block, height, hash``).
"""

from __future__ import annotations

from dataclasses import dataclass

HI = b"HI"
HELLO = b"HELLO"
BYE = b"BYE"
REPLY = b"REPLY"
UNKNOWNCOMMAND = b"UNKNOWNCOMMAND"


class FramingError(ValueError):
    """A message that is not OxenMQ."""


@dataclass(frozen=True)
class Incoming:
    route: bytes  # the ROUTER's routing id of the peer
    command: str
    rest: list[bytes]  # frames after the command (for a request: tag, data...)


def parse(frames: list[bytes]) -> Incoming:
    """Split a ROUTER message; raises FramingError if there is no command frame."""
    if len(frames) < 2:
        raise FramingError(f"expected [routing id, command, ...], got {len(frames)} frame(s)")
    try:
        command = frames[1].decode("ascii")
    except UnicodeDecodeError:
        raise FramingError(f"command frame is not ASCII: {frames[1][:40]!r}") from None
    return Incoming(route=frames[0], command=command, rest=list(frames[2:]))


def hello(route: bytes) -> list[bytes]:
    return [route, HELLO]


def reply(route: bytes, tag: bytes, data: list[bytes]) -> list[bytes]:
    return [route, REPLY, tag, *data]


def unknown_command(route: bytes, command: str) -> list[bytes]:
    return [route, UNKNOWNCOMMAND, command.encode("ascii")]


def push(route: bytes, command: str, data: list[bytes]) -> list[bytes]:
    return [route, command.encode("ascii"), *data]
