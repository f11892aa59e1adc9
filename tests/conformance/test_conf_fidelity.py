"""Which answers carry "t"/"hf", missing-signature status, and the chain height, method by method
as the storage server decides them (oxenss/rpc/request_handler.cpp: add_misc_response_fields is
called by info, get_swarm, retrieve, oxend_request, revoked_subaccounts, the 421 wrong-swarm
answer and, at the entry node only, the recursive store/delete/expire family; get_expiries,
batch and sequence answer without it; ifelse carries hf, v, height and condition but no "t").
Sources: docs/conformance.md, "Response fields per method"."""

from __future__ import annotations

import pytest

from .wire import Account, Wire, assert_t_hf, b64, is_int

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker", "swarm")]

# a long-running chain: height-gated ifelse conditions behave as on a real network
MIN_START_HEIGHT = 10_000


async def test_get_expiries_answers_only_expiries(wire: Wire, account: Account) -> None:
    r = await wire.store(account, b"exp")
    h = r.expect(200)["hash"]
    ts = wire.now()
    body = (await wire.rpc(wire.member(account), "get_expiries", {
        "pubkey": account.pubkey, "messages": [h], "timestamp": ts,
        **account.auth(f"get_expiries{ts}{h}")})).expect(200)
    assert set(body) == {"expiries"}, body
    assert is_int(body["expiries"][h])


async def test_batch_and_sequence_answer_only_results(wire: Wire, account: Account) -> None:
    node = wire.member(account)
    info = {"method": "info", "params": {}}
    for method in ("batch", "sequence"):
        body = (await wire.rpc(node, method, {"requests": [info]})).expect(200)
        assert set(body) == {"results"}, (method, body)
        assert_t_hf(body["results"][0]["body"], what=f"{method} → info")


async def test_ifelse_carries_hf_v_height_but_no_t(wire: Wire, account: Account) -> None:
    body = (await wire.rpc(wire.member(account), "ifelse", {
        "if": {"hf_at_least": [19]}, "else": {"method": "info", "params": {}}})).expect(200)
    assert set(body) == {"hf", "v", "height", "condition"}, body  # no branch ran: no "result"


async def test_retrieve_info_get_swarm_carry_t_and_hf(wire: Wire, account: Account) -> None:
    node = wire.member(account)
    ts = wire.now()
    body = (await wire.rpc(node, "retrieve", {"pubkey": account.pubkey, "timestamp": ts,
                                              **account.auth(f"retrieve{ts}")})).expect(200)
    assert_t_hf(body, what="retrieve")
    assert_t_hf((await wire.rpc(node, "info", {})).expect(200), what="info")
    assert_t_hf((await wire.rpc(node, "get_swarm", {"pubkey": account.pubkey})).expect(200), what="get_swarm")
    store = (await wire.store(account, b"misc")).expect(200)
    assert_t_hf(store, what="store at the entry node")


async def test_missing_signature_is_400(wire: Wire, account: Account) -> None:
    """PROTOCOL.md §4 (corrected) and the storage server: 400 with the parser's text; a retrieve
    without namespace and without signature is the handler's 401 instead."""
    node = wire.member(account)
    ts = wire.now()
    r = await wire.rpc(node, "retrieve", {"pubkey": account.pubkey, "timestamp": ts, "namespace": 0})
    assert (r.status, r.text) == (400, "invalid request: Required field 'signature' missing"), str(r)
    r = await wire.rpc(node, "expire_all", {"pubkey": account.pubkey, "expiry": ts + 60_000})
    assert (r.status, r.text) == (400, "invalid request: Required field 'signature' missing"), str(r)
    r = await wire.rpc(node, "retrieve", {"pubkey": account.pubkey})
    assert (r.status, r.text) == (401, "retrieve: request signature required"), str(r)


async def test_chain_height_is_a_long_running_chains(wire: Wire, account: Account) -> None:
    """Nodes, the seed and ifelse report the seed's height, which starts at --start-height."""
    res = (await wire.seed("get_n_service_nodes", {"active_only": True})).expect(200)["result"]
    assert res["height"] >= MIN_START_HEIGHT, res["height"]
    body = (await wire.rpc(wire.member(account), "ifelse", {
        "if": {"height_at_least": MIN_START_HEIGHT}, "then": {"method": "info", "params": {}},
        "else": {"method": "store", "params": {"pubkey": account.pubkey, "timestamp": wire.now(),
                                               "ttl": 60_000, "data": b64(b"low")}}})).expect(200)
    assert body["height"] >= MIN_START_HEIGHT and body["condition"] is True, body
    assert body["result"]["code"] == 200 and "version" in body["result"]["body"]
