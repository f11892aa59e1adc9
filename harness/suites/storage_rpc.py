"""Direct storage RPC to every member of a swarm, for scenarios that check what each service node
holds (the delivery family first; any family may import it).

A client only sees the network through onion paths and one swarm member at a time; a scenario
that states a rule of the storage RPC ("gone from every member", "no member stored it", "every
member reports the same expiry") asks each member directly, as the storage server's own network
tests do: ``POST https://<public_ip>:<storage_port>/storage_rpc/v1`` (self-signed certificate,
not verified, as Session clients talk to service nodes), requests signed with the account's key
(PROTOCOL.md §4).

Every call is written into the scenario's history as an operation record of kind ``rpc`` (one
direct attempt: method, node, HTTP status, the answer's error text), so a failed scenario's
report shows what each member answered. :func:`on_every_member` turns per-member observations
into a :class:`~harness.checks.CheckResult` for ``history.require``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from urllib3.exceptions import InsecureRequestWarning

from harness.checks import CheckResult, History
from harness.checks.result import Verdict, checker
from harness.client import Account
from harness.client.records import OUTCOME_ERROR, OUTCOME_OK, AttemptRecord, OperationRecord, new_op_id
from harness.suites.support import swarm_of
from nodes.protocol.constants import MAX_MESSAGE_DATA
from nodes.protocol.hashing import message_hash
from nodes.protocol.message import encrypt_message
from nodes.protocol.signing import (
    delete_message,
    expire_message,
    get_expiries_message,
    retrieve_message,
    sign_request,
    store_message,
)

T = TypeVar("T")

#: how often production storage servers purge expired messages (oxenss Database::CLEANUP_PERIOD)
CLEANUP_PERIOD_S = 10.0


@dataclass(frozen=True)
class Member:
    """A service node as a direct storage-RPC target."""

    name: str
    ed25519: str
    ip: str
    port: int
    #: the node implementation (harness.nodekinds): "python" (ours) or "oxen-storage"
    kind: str = "python"

    @property
    def url(self) -> str:
        return f"https://{self.ip}:{self.port}/storage_rpc/v1"

    def ref(self) -> dict[str, Any]:
        return {"ip": self.ip, "port": self.port, "ed25519": self.ed25519}


@dataclass
class Answer:
    """A node's answer to one storage RPC."""

    member: Member
    method: str
    status: int
    body: Any
    #: the node's ``t`` when it has one, else the local time of the answer (ms)
    at_ms: int

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def json(self) -> dict[str, Any]:
        assert isinstance(self.body, dict), (f"{self.member.name} {self.method}: HTTP "
                                             f"{self.status}, not a JSON object: {self.body!r:.300}")
        return self.body

    @property
    def text(self) -> str:
        return self.body if isinstance(self.body, str) else json.dumps(self.body)[:500]

    def expect(self, status: int = 200) -> dict[str, Any]:
        """Assert the status; the JSON object of a 200, ``{}`` for another status."""
        assert self.status == status, (f"{self.member.name} {self.method}: expected HTTP {status}, "
                                       f"got {self.status}: {self.text[:300]!r}")
        return self.json if status == 200 else {}

    def __str__(self) -> str:
        return f"{self.member.name} {self.method} → HTTP {self.status}: {self.text[:200]!r}"


def now_ms() -> int:
    return int(time.time() * 1000)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class StorageRpc:
    """Direct, signed storage RPC to a testnet's nodes, recorded into ``history`` (if given)."""

    def __init__(self, net: Any, history: History | None = None, *, timeout: float = 10.0) -> None:
        self.net = net
        self.history = history
        self.timeout = timeout
        self._http = requests.Session()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StorageRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- nodes ----------------------------------------------------------------------------------
    def member(self, name: str) -> Member:
        n = self.net.node(name)
        return Member(n.name, n.pubkey_ed25519, n.public_ip, int(n.storage_port),
                      getattr(n, "kind", "python"))

    def members(self, session_id: str) -> list[Member]:
        """The swarm members of ``session_id`` (by the testnet's directory), by name."""
        return [self.member(name) for name in swarm_of(self.net, session_id)]

    def outsiders(self, session_id: str) -> list[Member]:
        inside = set(swarm_of(self.net, session_id))
        return [self.member(n.name) for n in self.net.nodes if n.name not in inside]

    # -- raw calls ------------------------------------------------------------------------------
    def call(self, member: Member, method: str, params: dict[str, Any], *,
             account: str | None = None) -> Answer:
        """One storage RPC to ``member``; a connection failure is an AssertionError naming it."""
        started = time.time()
        rec = OperationRecord(op_id=new_op_id("rpc"), kind="rpc", account=account,
                              recipient=params.get("pubkey"), started_at=started,
                              details={"method": method, "node": member.name, "direct": True})
        attempt = AttemptRecord(n=1, method=method, destination=member.ref(), started_at=started)
        rec.attempts.append(attempt)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)
                # verify=False on each request: a session-wide False loses to REQUESTS_CA_BUNDLE
                resp = self._http.post(member.url, json={"method": method, "params": params},
                                       timeout=self.timeout, verify=False)
        except requests.RequestException as e:
            attempt.error_kind, attempt.error = "connect", repr(e)
            self._finish(rec, attempt, f"{member.name} {method}: {e!r}")
            raise AssertionError(f"{member.name} ({member.url}) {method} failed: {e!r}") from None
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text
        t = body.get("t") if isinstance(body, dict) else None
        answer = Answer(member, method, resp.status_code, body,
                        t if isinstance(t, int) else now_ms())
        attempt.http_status = attempt.status = resp.status_code
        attempt.ok = answer.ok
        if not answer.ok:
            attempt.error_kind, attempt.error = "rejected", answer.text[:300]
        rec.details["status"] = resp.status_code
        self._finish(rec, attempt, None if answer.ok else f"HTTP {resp.status_code}: "
                                                          f"{answer.text[:200]}")
        return answer

    def _finish(self, rec: OperationRecord, attempt: AttemptRecord, error: str | None) -> None:
        rec.ended_at = time.time()
        attempt.elapsed_ms = (rec.ended_at - rec.started_at) * 1000
        rec.outcome = OUTCOME_OK if error is None else OUTCOME_ERROR
        rec.error = error
        if error is not None:
            rec.error_type = "RpcRejected"
        else:
            rec.destination = attempt.destination
        if self.history is not None:
            self.history.records.append(rec)

    # -- storage RPC methods ----------------------------------------------------------------------
    def store(self, member: Member, pubkey: str, data: bytes, *, namespace: int = 0,
              ttl_ms: int = 3_600_000, timestamp: int | None = None,
              signer: Account | None = None, signature: str | None = None) -> Answer:
        """``store``; ``signer`` signs it (authenticated namespaces), ``signature`` overrides the
        signature (a wrong one)."""
        ts = now_ms() if timestamp is None else timestamp
        params: dict[str, Any] = {"pubkey": pubkey, "timestamp": ts, "ttl": ttl_ms,
                                  "data": b64(data)}
        if namespace:
            params["namespace"] = namespace
        if signer is not None:
            params["pubkey_ed25519"] = signer.identity.ed25519_hex
            params["signature"] = signature or sign_request(signer.identity,
                                                            store_message(namespace, ts))
        elif signature is not None:
            params["signature"] = signature
        return self.call(member, "store", params,
                         account=signer.session_id if signer is not None else None)

    def retrieve(self, member: Member, account: Account, *, namespace: int = 0,
                 last_hash: str | None = None, max_count: int | None = None,
                 max_size: int | None = None, signed: bool = True) -> Answer:
        """A ``retrieve`` as the account's owner (``signed``) or as anyone (unsigned)."""
        params: dict[str, Any] = {"pubkey": account.session_id}
        if namespace:
            params["namespace"] = namespace
        if signed:
            ts = now_ms()
            params.update(timestamp=ts, pubkey_ed25519=account.identity.ed25519_hex,
                          signature=sign_request(account.identity, retrieve_message(namespace, ts)))
        if last_hash is not None:
            params["last_hash"] = last_hash
        if max_count is not None:
            params["max_count"] = max_count
        if max_size is not None:
            params["max_size"] = max_size
        return self.call(member, "retrieve", params, account=account.session_id)

    def messages(self, member: Member, account: Account, *, namespace: int = 0,
                 max_pages: int = 50) -> list[dict[str, Any]]:
        """Everything ``member`` returns for the account's ``namespace`` (following ``more``)."""
        out: list[dict[str, Any]] = []
        last: str | None = None
        for _ in range(max_pages):
            body = self.retrieve(member, account, namespace=namespace, last_hash=last).expect(200)
            page = body.get("messages") or []
            out.extend(page)
            if not (body.get("more") and page):
                return out
            last = page[-1]["hash"]
        raise AssertionError(f"{member.name}: retrieve still says more after {max_pages} pages")

    def hashes(self, member: Member, account: Account, *, namespace: int = 0) -> list[str]:
        return [m["hash"] for m in self.messages(member, account, namespace=namespace)]

    def delete(self, member: Member, account: Account, hashes: Sequence[str], *,
               signer: Account | None = None) -> Answer:
        """``delete`` of ``hashes`` of the account, signed by ``signer`` (default: the owner)."""
        who = signer or account
        params = {"pubkey": account.session_id, "messages": list(hashes),
                  "pubkey_ed25519": who.identity.ed25519_hex,
                  "signature": sign_request(who.identity, delete_message(hashes))}
        return self.call(member, "delete", params, account=who.session_id)

    def expire(self, member: Member, account: Account, hashes: Sequence[str], expiry: int, *,
               mode: str = "") -> Answer:
        """``expire`` (``mode`` "", "shorten" or "extend") of the account's ``hashes``."""
        params: dict[str, Any] = {
            "pubkey": account.session_id, "messages": list(hashes), "expiry": expiry,
            "pubkey_ed25519": account.identity.ed25519_hex,
            "signature": sign_request(account.identity, expire_message(mode, expiry, hashes))}
        if mode:
            params[mode] = True
        return self.call(member, "expire", params, account=account.session_id)

    def get_expiries(self, member: Member, account: Account, hashes: Sequence[str]) -> Answer:
        ts = now_ms()
        params = {"pubkey": account.session_id, "messages": list(hashes), "timestamp": ts,
                  "pubkey_ed25519": account.identity.ed25519_hex,
                  "signature": sign_request(account.identity, get_expiries_message(ts, hashes))}
        return self.call(member, "get_expiries", params, account=account.session_id)

    # -- every member -----------------------------------------------------------------------------
    def each(self, members: Iterable[Member], fn: Callable[[Member], T]) -> dict[str, T]:
        """``fn(member)`` for every member, by member name."""
        return {m.name: fn(m) for m in members}

    def view(self, members: Iterable[Member], account: Account, *,
             namespace: int = 0) -> dict[str, list[str]]:
        """The hashes each member returns for the account's ``namespace``, in its order."""
        return self.each(members, lambda m: self.hashes(m, account, namespace=namespace))


def swarm_results(answer: Answer) -> dict[str, dict[str, Any]]:
    """The per-member results (``swarm``) of a store/delete/expire answer, by ed25519 key."""
    swarm = answer.json.get("swarm")
    assert isinstance(swarm, dict), f"no swarm results in {answer}"
    return swarm


def by_member(members: Iterable[Member], swarm: dict[str, dict[str, Any]],
              key: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """``key(result)`` of each member's swarm result, by member name (None: no result from
    it, which :func:`on_every_member` counts as no answer)."""
    return {m.name: (key(swarm[m.ed25519]) if m.ed25519 in swarm else None) for m in members}


def wait_until(what: str, probe: Callable[[], T], done: Callable[[T], bool], *,
               timeout: float, interval: float = 0.5) -> T:
    """Call ``probe`` until ``done(result)`` or the deadline; AssertionError naming ``what`` and
    the last result on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g}s; last: {result!r:.800}")
        time.sleep(interval)


@checker("storage")
def on_every_member(name: str, observed: dict[str, Any], expected: Any, *,
                    prop: str) -> CheckResult:
    """Every member's observation equals ``expected`` (a member that did not answer — ``None``
    observed — makes the verdict unknown). ``prop`` says what the observation is."""
    bad = {m: v for m, v in observed.items() if v is not None and v != expected}
    missing = sorted(m for m, v in observed.items() if v is None)
    details = [f"{m}: {v!r:.300} (expected {expected!r:.300})" for m, v in sorted(bad.items())]
    details += [f"{m}: no answer" for m in missing]
    if not observed:
        verdict, summary = Verdict.UNKNOWN, f"{prop}: no member observed"
    elif bad:
        verdict = Verdict.FAILED
        summary = f"{prop}: {len(bad)}/{len(observed)} members disagree ({', '.join(sorted(bad))})"
    elif missing:
        verdict = Verdict.UNKNOWN
        summary = f"{prop}: {len(missing)} member(s) did not answer"
    else:
        verdict, summary = Verdict.OK, f"{prop}: holds on all {len(observed)} members"
    return CheckResult(name, verdict, summary, details,
                       {"observed": observed, "expected": expected, "members": sorted(observed)})


# -- message sizes ----------------------------------------------------------------------------

def session_data_len(sender: Account, recipient: str, body_len: int, timestamp_ms: int) -> int:
    """Decoded ``data`` bytes of a 1-to-1 Session message whose body is ``body_len`` ASCII
    characters (padding, the sealed box and the protobuf wrapping included)."""
    return len(encrypt_message(sender.identity, recipient, "x" * body_len,
                               timestamp_ms=timestamp_ms))


def largest_body_within(sender: Account, recipient: str, limit: int = MAX_MESSAGE_DATA, *,
                        timestamp_ms: int | None = None) -> int:
    """The longest ASCII body whose 1-to-1 message ``data`` is at most ``limit`` bytes (data
    grows in 160-byte padding steps, so one character more may add 160 bytes)."""
    ts = now_ms() if timestamp_ms is None else timestamp_ms
    lo, hi = 0, limit  # data > body: a body of `limit` characters never fits
    assert session_data_len(sender, recipient, lo, ts) <= limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if session_data_len(sender, recipient, mid, ts) <= limit:
            lo = mid
        else:
            hi = mid
    return lo


def seeded_bytes(net: Any, label: str, size: int) -> bytes:
    """``size`` bytes derived from the testnet's seed and ``label`` (a replay with the same
    seed stores the same data, so the same hashes)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(f"{net.topology.seed}/{label}/{counter}".encode(),
                               digest_size=64).digest()
        counter += 1
    return out[:size]


def raw_hash(pubkey: str, namespace: int, data: bytes) -> str:
    return message_hash(pubkey, namespace, data)


__all__ = ["CLEANUP_PERIOD_S", "Answer", "Member", "StorageRpc", "b64", "by_member",
           "largest_body_within", "now_ms", "on_every_member", "raw_hash", "seeded_bytes",
           "session_data_len", "swarm_results", "wait_until"]
