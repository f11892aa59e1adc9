"""Typed errors of the Session client.

Every error says what failed and where: the node (ip:port and a short Ed25519 key), the hop of
the onion path when known, the HTTP / destination status and the text the network answered.
Errors raised at the end of an operation (``send``, ``receive``, ``get_swarm``) carry the
operation record (``.record``) so a caller can see every attempt that was made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .records import OperationRecord
    from .snode import Snode


def describe_node(node: Snode | None) -> str:
    """``ip:port (…abcdef12)`` for messages; ``?`` for an unknown node."""
    if node is None:
        return "?"
    return f"{node.ip}:{node.port} ({node.short})"


class ClientError(Exception):
    """Base class of every error the Session client raises."""

    def __init__(self, message: str, *, record: OperationRecord | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.record = record

    def __str__(self) -> str:
        return self.message


class AccountError(ClientError):
    """An account file is missing, unreadable or inconsistent."""


class BootstrapError(ClientError):
    """No seed answered with a usable list of service nodes."""


class NoPathError(ClientError):
    """Not enough usable service nodes to build onion paths that satisfy the path rules."""


class SwarmError(ClientError):
    """The swarm of an account could not be found or has no usable member left."""


class ClockError(ClientError):
    """The network rejects our timestamps (406/425) even after correcting the clock offset."""


class Timeout(ClientError, TimeoutError):
    """A wait (``wait_for``) or a request did not finish in time."""


class _NodeError(ClientError):
    """An error attributed to a node; subclasses say whether it is a path or a destination."""

    where = "node"

    def __init__(self, node: Snode | None, status: int | None, text: str, *,
                 hop: int | None = None, method: str | None = None, detail: str = "") -> None:
        self.node = node
        self.status = status
        self.text = text
        self.hop = hop
        self.method = method
        where = self.where if hop is None else f"{self.where} hop {hop}"
        what = f"{method} " if method else ""
        status_s = f"status {status}" if status is not None else "no status"
        msg = f"{what}failed at {where} {describe_node(node)}: {status_s}"
        if text:
            msg += f": {text[:300]!r}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "node": self.node.ref() if self.node is not None else None,
            "status": self.status,
            "text": self.text,
            "hop": self.hop,
        }


class PathError(_NodeError):
    """An onion path failed before reaching the destination (guard unreachable, a relay
    answered 502/503/504, the response could not be decrypted, the request timed out)."""

    where = "onion path"


class DestinationError(_NodeError):
    """The destination service node answered with an error status."""

    where = "destination"


class RequestRejected(DestinationError):
    """The destination rejected the request itself (400, 401, 403, 413): retrying elsewhere
    would not help; the message holds the node's reason."""


class StoreUnconfirmed(DestinationError):
    """A store was answered 200 but too few swarm members confirmed it with a valid signature
    of the expected message hash (e.g. a node that drops stores)."""


class StoreFailed(ClientError):
    """A message could not be stored in the recipient's swarm after all attempts."""


class RetrieveFailed(ClientError):
    """Messages could not be retrieved from the own swarm after all attempts."""
