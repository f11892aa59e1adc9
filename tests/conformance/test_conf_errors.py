"""Error answers clients key their behaviour on (status code and, where clients or the network
tests compare it, the exact text), and that a node keeps serving after each of them.  Sources:
docs/conformance.md, section "Errors"."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .wire import DAY_MS, Account, Snode, Wire, b64, raw_https

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]


async def still_serving(wire: Wire, node: Snode) -> None:
    (await wire.rpc(node, "info", {})).expect(200)


async def expect_error(wire: Wire, node: Snode, method: str, params: Any, status: int,
                       text: str | None) -> None:
    r = await wire.rpc(node, method, params)
    assert r.status == status, f"{method}: expected {status} {text!r}, got {r}"
    if text is not None:
        assert r.text == text, f"{method}: expected body {text!r}, got {r.text!r}"
    await still_serving(wire, node)


async def test_request_framing_errors(wire: Wire, account: Account) -> None:
    """request_handler.cpp process_client_req(string_view): 400 with these bodies."""
    node = wire.member(account)
    cases = [
        (b"{not json", "invalid json"),
        (json.dumps({"params": {}}).encode(), "invalid json: no `method` field"),
        (json.dumps({"method": 5, "params": {}}).encode(), "invalid json: no `method` field"),
        (json.dumps({"method": "info"}).encode(), "invalid json: no `params` field"),
        (json.dumps({"method": "info", "params": []}).encode(), "invalid json: no `params` field"),
        (json.dumps({"method": "fly", "params": {}}).encode(), "no method fly"),
    ]
    mismatches = []
    for data, text in cases:
        r = await wire.rpc_raw(node, data)
        if (r.status, r.text) != (400, text):
            mismatches.append(f"{data[:40]!r}: expected 400 {text!r}, got {r}")
        await still_serving(wire, node)
    assert not mismatches, "\n".join(mismatches)


async def test_parameter_errors(wire: Wire, account: Account) -> None:
    """client_rpc_endpoints.cpp parse errors: 400 "invalid request: <reason>"."""
    node = wire.member(account)
    ts = wire.now()
    data = b64(b"x")
    pk = account.pubkey
    cases = [
        # 62 hex digits: a bad length on any network (64 would be an unprefixed 05 pubkey, which a
        # testnet storage server accepts: oxenss/common/pubkey.cpp user_pubkey::load)
        ("store", {"pubkey": pk[:-4], "timestamp": ts, "ttl": 60_000, "data": data},
         "invalid request: Pubkey must be 66 hex digits (33 bytes) long"),
        ("store", {"pubkey": pk, "timestamp": ts, "data": data},
         "invalid request: Required field 'expiry' or 'ttl' missing"),
        ("store", {"pubkey": pk, "timestamp": ts, "ttl": 60_000, "expiry": ts + 60_000,
                   "data": data}, "invalid request: Cannot specify both 'expiry' and 'ttl'"),
        ("store", {"pubkey": pk, "ttl": 60_000, "data": data},
         "invalid request: Required field 'timestamp' missing"),
        ("store", {"pubkey": pk, "timestamp": ts, "ttl": 60_000},
         "invalid request: Required field 'data' missing"),
        ("store", {"pubkey": pk, "timestamp": ts, "ttl": 60_000, "data": "not base64!"},
         "invalid request: Invalid 'data' value: not base64 encoded"),
        ("store", {"pubkey": pk, "timestamp": ts, "ttl": 60_000, "data": data,
                   "namespace": 40000}, "invalid request: Invalid value given for 'namespace': "
                                        "value out of range"),
        ("retrieve", {**wire.retrieve_params(account), "last_hash": "short"},
         "invalid request: Invalid last_hash: expected base64 (43 chars)"),
        ("retrieve", {**wire.retrieve_params(account), "signature": "AAAA"},
         "invalid request: invalid signature: expected base64 encoded Ed25519 signature"),
        ("retrieve", {**wire.retrieve_params(account), "pubkey_ed25519": "00" * 31},
         "invalid request: Invalid pubkey_ed25519: expected 64 hex char or 32 byte pubkey"),
        # below 1,000,000 s worth of milliseconds the value was clearly given in seconds
        ("retrieve", {**wire.retrieve_params(account), "timestamp": 999_999_999,
                      "signature": account.sign("retrieve999999999")},
         "invalid request: Invalid timestamp for 'timestamp': timestamp must be in milliseconds"),
        ("delete", {**account.auth("delete"), "messages": []},
         "invalid request: messages does not contain any message hashes"),
        ("delete", {**account.auth("deletexyz"), "messages": ["xyz"]},
         "invalid request: invalid message hash: xyz"),
        ("get_swarm", {}, "invalid request: Required field 'pubkey' missing"),
    ]
    mismatches = []
    for method, params, text in cases:
        r = await wire.rpc(node, method, params)
        if (r.status, r.text) != (400, text):
            mismatches.append(f"{method} {sorted(params)}: expected 400 {text!r}, got {r}")
        await still_serving(wire, node)
    assert not mismatches, "\n".join(mismatches)


async def test_missing_signature_is_400_with_production_text(wire: Wire, account: Account) -> None:
    """A retrieve with a timestamp but no signature: 400 ``invalid request: Required field
    'signature' missing``, as the storage server answers it (asserted by NT r_bad3) and as
    PROTOCOL.md §4 (corrected) states."""
    node = wire.member(account)
    await expect_error(wire, node, "retrieve", {"pubkey": account.pubkey, "timestamp": wire.now()},
                       400, "invalid request: Required field 'signature' missing")


async def test_store_ttl_403(wire: Wire, account: Account) -> None:
    """TTL outside 10 s .. 14 days (30 days in private namespaces) -> 403
    "Provided expiry/TTL is not valid." (request_handler.cpp)."""
    text = "Provided expiry/TTL is not valid."
    for ns, ttl in ((0, 9_999), (0, 14 * DAY_MS + 1), (3, 30 * DAY_MS + 1), (10, 15 * DAY_MS)):
        r = await wire.store(account, b"ttl", namespace=ns, ttl=ttl)
        assert (r.status, r.text) == (403, text), f"ns {ns} ttl {ttl}: {r}"
    for ns, ttl in ((0, 10_000), (0, 14 * DAY_MS), (3, 30 * DAY_MS)):
        (await wire.store(account, f"ok{ns}{ttl}".encode(), namespace=ns, ttl=ttl)).expect(200)
    await still_serving(wire, wire.member(account))


async def test_store_clock_406(wire: Wire, account: Account) -> None:
    text = "Timestamp error: check your clock"
    now = wire.now()
    future = await wire.store(account, b"future", timestamp=now + 60_000)
    assert (future.status, future.text) == (406, text), str(future)
    expired = await wire.store(account, b"expired", timestamp=now - 3_600_000, ttl=60_000)
    assert (expired.status, expired.text) == (406, text), str(expired)
    # a few seconds in the future are tolerated
    (await wire.store(account, b"soon", timestamp=now + 5_000)).expect(200)


async def test_signature_errors_401(wire: Wire, account: Account) -> None:
    """Texts compared by the storage server's network-tests (test_store_retrieve.py,
    test_batch.py)."""
    node = wire.member(account)
    await expect_error(wire, node, "retrieve", {"pubkey": account.pubkey}, 401,
                       "retrieve: request signature required")
    ts = wire.now()
    good = account.auth(f"retrieve{ts}")
    sig = good["signature"]
    bad = sig[:4] + ("z" if sig[4] != "z" else "a") + sig[5:]
    await expect_error(wire, node, "retrieve", {**good, "timestamp": ts, "signature": bad}, 401,
                       "retrieve signature verification failed")
    other = Account.new()
    await expect_error(wire, node, "retrieve", {**good, "timestamp": ts,
                                               "pubkey_ed25519": other.identity.ed25519_hex},
                       401, "retrieve signature verification failed")
    r = await wire.store(account, b"x", namespace=3, signed=False)
    assert (r.status, r.text) == (401, "store: signature required to store to namespace 3"), str(r)
    ts = wire.now()
    params = {"pubkey": account.pubkey, "timestamp": ts, "ttl": 60_000, "data": b64(b"x"),
              "namespace": 3, **account.auth(f"store{ts}")}  # signed for ns 0, not 3
    await expect_error(wire, node, "store", params, 401, "store signature verification failed")
    await expect_error(wire, node, "delete_all",
                       {**account.auth(f"delete_all{ts + 1}"), "timestamp": ts}, 401,
                       "delete_all signature verification failed")


async def test_retrieve_clock_406(wire: Wire, account: Account) -> None:
    node = wire.member(account)
    for delta in (-120_000, 120_000):
        ts = wire.now() + delta
        await expect_error(wire, node, "retrieve", {**account.auth(f"retrieve{ts}"),
                                                    "timestamp": ts}, 406,
                           "retrieve timestamp too far from current time")


async def test_body_over_10_mib_is_413(wire: Wire) -> None:
    """https.cpp on_headers: Content-Length above the 10 MiB maximum -> 413 "Request body too
    large" (answered from the headers, before the body)."""
    node = wire.nodes[0]
    size = 10 * 1024 * 1024 + 1
    head = (f"POST /storage_rpc/v1 HTTP/1.1\r\nHost: {node.ip}:{node.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n"
            "Connection: close\r\n\r\n").encode()
    status, raw = await raw_https(node.url, head, b"{" + b" " * (size - 2) + b"}")
    assert status == 413, f"oversized request answered {raw[:200]!r}"
    await still_serving(wire, node)
