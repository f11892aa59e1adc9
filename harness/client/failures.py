"""Failure classification of the client (docs/client.md, "Behaviour and its sources"): what an
answer — or the lack of one — means, which node or path is to blame, what the policy does
about it (strike, drop, quarantine, swarm replaced) and how the request goes on: the
:class:`Outcome` of the attempt.

Each classification fills the attempt's record (``error_kind``: an :class:`ErrorKind` value,
``error``, ``failed_node``, ``actions``) and returns a :class:`Verdict`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from .errors import ClientError, ClockError, DestinationError, PathError, RequestRejected, describe_node
from .paths import OnionPath
from .policy import PathPolicy
from .records import AttemptRecord
from .snode import Snode, parse_swarm_body
from .transport import CONNECT, DISCONNECTED, TIMEOUT, HttpResult, TransportError

NODE_NOT_FOUND_PREFIXES = ("Next node not found: ", "Next node is currently unreachable: ")
SNODE_NOT_READY_PREFIX = "Snode not ready: "
#: statuses relayed back through a path that are no path failure (session-desktop: "no path
#: strike for 400/404"): the request was refused or garbled on the way (a corrupting relay makes
#: the next hop answer 400 "Invalid ciphertext"), no node is down
NO_PATH_STRIKE_STATUSES = (400, 404)
#: 503 answers of the edge itself (oxen-storage HTTPS: check_ready, the request queue being full)
EDGE_NOT_READY_PREFIXES = ("Service node is not ready: ", "Server busy, try again later")


class Outcome(Enum):
    """How a request goes on after one attempt."""

    OK = "ok"
    RETRY_PATH = "retry_path"  # the path failed: retry on another path
    RETRY_DEST = "retry_dest"  # the destination failed: retry on another destination
    SWARM_MOVED = "swarm_moved"  # 421: swarm cache replaced, retry in the new swarm
    CLOCK = "clock"  # 406/425: re-read network time and retry
    FATAL = "fatal"  # the request itself was rejected: do not retry


class ErrorKind(StrEnum):
    """The short error class an attempt record keeps (``AttemptRecord.error_kind`` holds the
    value: records stay plain JSON)."""

    CONNECT = CONNECT  # no connection to the guard (or to a seed / guard candidate)
    TIMEOUT = TIMEOUT
    DISCONNECTED = DISCONNECTED
    PATH = "path"  # an error somewhere on the onion path
    DECRYPT = "decrypt"  # the answer did not decrypt
    DESTINATION = "destination"  # the destination failed (or answered nonsense)
    REJECTED = "rejected"  # 400/401/403/413: the request itself was refused
    SWARM = "swarm"  # 421: not in the account's swarm
    CLOCK = "clock"  # 406/425: our timestamp was refused
    UNCONFIRMED = "unconfirmed"  # a store without enough signed confirmations
    SEED = "seed"  # a seed gave no usable node list


@dataclass
class Verdict:
    """The classification of one attempt: its outcome, and the data or the error."""

    kind: Outcome
    data: dict[str, Any] | None = None
    error: ClientError | None = None
    #: a node to keep off the rest of this operation's routes (a node that said it is not ready)
    avoid: str | None = None
    #: the failure may be a dead node somewhere on the route (a timeout, no answer, a relayed
    #: 5xx): when it names nobody, the route feeds PathPolicy.route_failed. A relayed 400/404 is
    #: no node's absence: fed to it, the routes through two corrupting relays single out the
    #: honest destination they share
    dead_node_possible: bool = True


def extract_pubkey(text: str, prefix: str) -> str | None:
    """The 64-hex Ed25519 key following ``prefix`` in a node's error text, if any."""
    pos = text.find(prefix)
    if pos < 0:
        return None
    rest = text[pos + len(prefix):].strip().split()
    if not rest:
        return None
    key = rest[0].strip().lower()
    if len(key) != 64:
        return None
    try:
        bytes.fromhex(key)
    except ValueError:
        return None
    return key


class FailureClassifier:
    """Classifies failed attempts and applies the policy's consequences.

    ``cache_swarm(account, members, swarm_id, reported)`` replaces a cached swarm (after a 421
    that carried the new one).
    """

    def __init__(self, policy: PathPolicy,
                 cache_swarm: Callable[[str, Sequence[Snode], int | None, Sequence[Snode] | None], None]) -> None:
        self.policy = policy
        self.cache_swarm = cache_swarm

    def undecryptable(self, a: AttemptRecord, res: HttpResult, path: OnionPath, method: str,
                      exc: Exception) -> Verdict:
        """The guard answered 200 but the answer does not decrypt: the path is at fault."""
        err = PathError(path.guard, 200, res.text()[:200], hop=0, method=method,
                        detail=f"answer not decryptable: {exc}")
        a.error_kind, a.error = ErrorKind.DECRYPT.value, str(err)
        self.policy.strike_path(path, a)
        return Verdict(Outcome.RETRY_PATH, error=err)

    def not_an_object(self, a: AttemptRecord, status: int, body: str, dest: Snode, method: str) -> Verdict:
        """A success status whose body is not a JSON object: the destination is at fault."""
        err = DestinationError(dest, status, body[:200], method=method, detail="answer is not a JSON object")
        a.error_kind, a.error = ErrorKind.DESTINATION.value, str(err)
        a.failed_node = dest.ref()
        self.policy.strike_node(dest, "bad answer", a)
        return Verdict(Outcome.RETRY_DEST, error=err)

    def transport(self, a: AttemptRecord, exc: TransportError, path: OnionPath,
                           dest: Snode, method: str) -> Verdict:
        guard = path.guard
        a.error_kind = ErrorKind(exc.kind).value
        if exc.kind == CONNECT:
            a.failed_node = guard.ref()
            # libsession: a connection failure to the edge node retires the path at once and
            # records a failure for the edge node
            err = PathError(guard, None, "", hop=0, method=method,
                            detail=f"cannot connect to the guard: {exc.detail}")
            self.policy.retire_path(path, a)
            self.policy.mark_unreachable(guard)
            self.policy.strike_node(guard, "unreachable guard", a)
        else:
            err = PathError(guard, None, "", hop=0, method=method,
                            detail=f"{exc.kind}: {exc.detail} (no answer through the path to {dest})")
            self.policy.strike_path(path, a)
        a.error = str(err)
        return Verdict(Outcome.RETRY_PATH, error=err)

    def path_status(self, reported_421: set[tuple[str, str]], a: AttemptRecord, res: HttpResult, path: OnionPath,
                             dest: Snode, method: str, associated_with: str | None) -> Verdict:
        status = res.status
        text = res.text().strip()
        guard = path.guard
        # 421 / 406 can come back as a plain answer (session-desktop checks them on the path too)
        if status == 421:
            data = None
            try:
                data = json.loads(text)
            except ValueError:
                pass
            return self.wrong_swarm(reported_421, a, data, text, dest, method, associated_with)
        if status in (406, 425):
            err: ClientError = ClockError(f"{method}: the network says our clock is off (status {status} "
                                          f"via {describe_node(guard)}): {text[:200]!r}")
            a.error_kind, a.error = ErrorKind.CLOCK.value, str(err)
            return Verdict(Outcome.CLOCK, error=err)
        for prefix in NODE_NOT_FOUND_PREFIXES:
            missing = extract_pubkey(text, prefix)
            if missing is None:
                continue
            hop_idx = path.index_of(missing)
            node = self.policy.pool.get(missing) or (dest if missing == dest.ed25519 else None)
            a.failed_node = node.ref() if node else {"ed25519": missing}
            if missing == dest.ed25519:
                err = PathError(dest, status, text, hop=len(path.hops), method=method,
                                detail="the last hop cannot reach the destination")
                a.error_kind, a.error = ErrorKind.DESTINATION.value, str(err)
                self.policy.drop_node(missing, "next node not found", a)
                return Verdict(Outcome.RETRY_DEST, error=err)
            err = PathError(node, status, text, hop=hop_idx, method=method,
                            detail="a relay cannot reach the next hop")
            a.error_kind, a.error = ErrorKind.PATH.value, str(err)
            self.policy.drop_node(missing, "next node not found", a)
            if self.policy.paths.get(path.id) is not None:
                self.policy.strike_path(path, a, skip={missing})
            return Verdict(Outcome.RETRY_PATH, error=err)
        if status == 503 and (SNODE_NOT_READY_PREFIX in text or text.startswith(EDGE_NOT_READY_PREFIXES)):
            return self.not_ready(a, status, text, path, dest, method)
        err = PathError(guard, status, text, method=method,
                        detail="error somewhere on the path (the guard relayed it)")
        a.error_kind, a.error = ErrorKind.PATH.value, str(err)
        if status in NO_PATH_STRIKE_STATUSES:
            # session-desktop: no path strike for 400/404 ("probably a dead sogs"), just retry
            a.actions.append("retry_other_path")
            return Verdict(Outcome.RETRY_PATH, error=err, dead_node_possible=False)
        self.policy.strike_path(path, a)
        return Verdict(Outcome.RETRY_PATH, error=err)

    def not_ready(self, a: AttemptRecord, status: int, text: str, path: OnionPath, dest: Snode,
                  method: str) -> Verdict:
        """A plain 503 through the path. As libsession (``SnodeNotReady`` / ``EdgeNotReady``):

        * ``Snode not ready: X`` — a node behind the guard is not ready (the storage server's
          answer on the node<->node channel, relayed back unchanged; our relays give the same):
          one strike for X; the destination is retried elsewhere, a relay on another path.
        * ``Service node is not ready: …`` / ``Server busy, try again later`` naming nobody —
          only the edge answers so (over HTTPS): one strike for the guard, another path.

        Other 503s (e.g. a connection cap) go the way of any error relayed by the guard.

        The node is named either way, so the failure does not feed the route intersection
        (PathPolicy.route_failed: a decommissioned node's answers mixed with another fault's
        failed routes single out an innocent node)."""
        key = extract_pubkey(text, SNODE_NOT_READY_PREFIX)
        if key is not None:
            named = self.policy.pool.get(key) or (dest if key == dest.ed25519 else None)
            hop = len(path.hops) if key == dest.ed25519 else path.index_of(key)
            err: ClientError = PathError(named, status, text, hop=hop,
                                         method=method, detail="that node is not ready")
            a.error_kind, a.error = ErrorKind.PATH.value, str(err)
            a.failed_node = named.ref() if named is not None else {"ed25519": key}
            if key in self.policy.pool:
                self.policy.strike_node(key, "not ready", a)
            if key == dest.ed25519:
                return Verdict(Outcome.RETRY_DEST, error=err, avoid=key)
            return Verdict(Outcome.RETRY_PATH, error=err, avoid=key)
        guard = path.guard
        err = PathError(guard, status, text, hop=0, method=method, detail="the guard is not ready")
        a.error_kind, a.error = ErrorKind.PATH.value, str(err)
        a.failed_node = guard.ref()
        self.policy.strike_node(guard, "guard not ready", a)
        return Verdict(Outcome.RETRY_PATH, error=err, avoid=guard.ed25519)

    def wrong_swarm(self, reported_421: set[tuple[str, str]], a: AttemptRecord, data: Any, text: str, dest: Snode,
                    method: str, associated_with: str | None) -> Verdict:
        err = DestinationError(dest, 421, text[:200], method=method, detail="not in the account's swarm")
        a.error_kind, a.error = ErrorKind.SWARM.value, str(err)
        a.failed_node = dest.ref()
        if associated_with is None:
            self.policy.strike_node(dest, "421 without an account", a)
            return Verdict(Outcome.RETRY_DEST, error=err)
        key = (dest.ed25519, associated_with)
        if key in reported_421:
            # session-desktop PingPong421: a node that keeps reporting 421 is dropped
            self.policy.drop_node(dest.ed25519, "repeated 421", a)
            return Verdict(Outcome.RETRY_DEST, error=err)
        reported_421.add(key)
        swarm_id, reported = parse_swarm_body(data)
        members = [m for m in reported if m.ed25519 not in self.policy.pool.dropped]
        if members:
            for m in members:
                self.policy.pool.add(m)
            self.cache_swarm(associated_with, members, swarm_id, reported)
            a.actions.append(f"swarm_replaced:{len(members)}")
            return Verdict(Outcome.SWARM_MOVED, error=err)
        entry = self.policy.swarms.get(associated_with)
        if entry is not None:
            entry.members = [m for m in entry.members if m.ed25519 != dest.ed25519]
        a.actions.append("swarm_member_removed")
        self.policy.strike_node(dest, "421 without a swarm", a)
        return Verdict(Outcome.RETRY_DEST, error=err)

    def destination(self, reported_421: set[tuple[str, str]], a: AttemptRecord, status: int, body: str, data: Any,
                             path: OnionPath, dest: Snode, method: str,
                             associated_with: str | None) -> Verdict:
        if status == 421:
            return self.wrong_swarm(reported_421, a, data, body, dest, method, associated_with)
        a.failed_node = dest.ref()
        if status in (406, 425):
            err: ClientError = ClockError(f"{method}: destination {describe_node(dest)} rejects our "
                                          f"timestamp (status {status}): {body[:200]!r}")
            a.error_kind, a.error = ErrorKind.CLOCK.value, str(err)
            return Verdict(Outcome.CLOCK, error=err)
        if status in (400, 401, 403, 413):
            err = RequestRejected(dest, status, body, method=method)
            a.error_kind, a.error = ErrorKind.REJECTED.value, str(err)
            return Verdict(Outcome.FATAL, error=err)
        if status == 502:
            missing = None
            for prefix in NODE_NOT_FOUND_PREFIXES:
                missing = missing or extract_pubkey(body, prefix)
            if missing is not None:
                err = DestinationError(dest, status, body, method=method)
                a.error_kind, a.error = ErrorKind.DESTINATION.value, str(err)
                self.policy.drop_node(missing, "next node not found", a)
                return Verdict(Outcome.RETRY_DEST, error=err)
        err = DestinationError(dest, status, body, method=method)
        a.error_kind, a.error = ErrorKind.DESTINATION.value, str(err)
        if status == 429:
            a.actions.append("rate_limited")
            return Verdict(Outcome.RETRY_DEST, error=err)
        # session-desktop processAnyOtherErrorAtDestination: one strike for the destination
        self.policy.strike_node(dest, f"status {status}", a)
        return Verdict(Outcome.RETRY_DEST, error=err)
