"""Differential conformance, the requests: every case sends the same requests (same accounts,
same data, same shapes) to one testnet and records each answer as a named *probe*.  The payload
(differential_net.py) runs every case once against a testnet of real storage servers and once
against a testnet of our nodes, and compares probe by probe (differential.py).

Choices are deterministic: accounts come from fixed seeds, the node a case talks to is the
account's swarm member with the lowest Ed25519 key, an outsider is the lowest non-member, onion
paths are the lowest three other nodes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nodes.protocol.keys import Identity
from nodes.protocol.onion import OnionHop
from nodes.protocol.swarm import swarm_for, swarm_space

from .differential import Observation, Symbols, observe
from .wire import Account, OnionReply, Reply, Snode, Wire, b64, build_onion, verify_node_sig

TTL = 3_600_000
DAY_MS = 24 * 3600 * 1000
#: a valid-looking message hash nobody stored
FAKE = "bepQtTaYrzcuCXO3fZkmk/h3xkMQ3vCh94i5HzLmj3I"
MAX_BODY = 76_800
SENT_LAG_MS = 3_000


def _seed(name: str) -> bytes:
    return hashlib.sha256(f"session-testnet differential {name}".encode()).digest()


def account(name: str, style: str = "session") -> Account:
    """The same account on both testnets."""
    return Account(Identity.from_seed(_seed(name)), style)


#: a well-formed node identity that is in neither testnet
UNKNOWN_HOP = OnionHop.from_hex(Identity.from_seed(_seed("unknown hop")).ed25519_hex,
                                Identity.from_seed(_seed("unknown hop")).x25519_hex)


def _verifies(ed: str, message: str | bytes, sig: Any) -> bool:
    try:
        verify_node_sig(ed, message, sig, what="member")
    except AssertionError:
        return False
    return True


@dataclass
class Side:
    """One testnet as the cases see it."""

    name: str
    wire: Wire
    symbols: Symbols
    probes: dict[str, Observation] = field(default_factory=dict)

    # -- deterministic choices ------------------------------------------------------------------
    def swarm_id(self, acct: Account) -> int:
        return swarm_for(swarm_space(acct.prefixed), self.wire.swarm_ids())

    def members(self, acct: Account) -> list[Snode]:
        return sorted(self.wire.swarm_of(acct), key=lambda n: n.ed25519)

    def member(self, acct: Account) -> Snode:
        return self.members(acct)[0]

    def outsider(self, acct: Account) -> Snode:
        inside = {n.ed25519 for n in self.members(acct)}
        return sorted((n for n in self.wire.nodes if n.ed25519 not in inside), key=lambda n: n.ed25519)[0]

    def path(self, dest: Snode) -> list[Snode]:
        return sorted((n for n in self.wire.nodes if n.ed25519 != dest.ed25519), key=lambda n: n.ed25519)[:3]

    def sent_now(self) -> int:
        """A timestamp for the client to send (and to recognise in answers): network time less
        3 s, so that it never equals a server's own clock reading (``info``'s ``timestamp``)."""
        return self.wire.now() - SENT_LAG_MS

    # -- recording ------------------------------------------------------------------------------
    def record(self, probe: str, reply: Reply, syms: Symbols, **facts: Any) -> Any:
        """Record ``reply`` as ``probe``; returns its parsed JSON body (None if not JSON)."""
        assert probe not in self.probes, f"probe {probe} recorded twice"
        self.probes[probe] = observe(reply.status, reply.content_type, reply.body, syms, facts)
        try:
            return json.loads(reply.body)
        except ValueError:
            return None

    def record_onion(self, probe: str, out: OnionReply, syms: Symbols, **facts: Any) -> None:
        if out.http.status != 200 or out.status is None:
            self.probes[probe] = observe(out.http.status, out.http.content_type, out.http.body, syms, facts)
            return
        inner = observe(out.status, None, out.body, syms)
        self.probes[probe] = Observation(out.http.status, out.http.content_type,
                                         {"inner status": inner.status, "inner body": inner.body},
                                         dict(facts))

    def member_facts(self, body: Any, acct: Account,
                     sig_message: Callable[[dict[str, Any]], str | bytes]) -> dict[str, Any]:
        """Facts about a per-member ``swarm`` answer: one entry per member of the account's swarm,
        each signed over ``sig_message(entry)`` by that member."""
        swarm = body.get("swarm") if isinstance(body, dict) else None
        if not isinstance(swarm, dict):
            return {"swarm entries": "none"}
        want = {n.ed25519 for n in self.members(acct)}
        signed = all(_verifies(ed, sig_message(res), res.get("signature"))
                     for ed, res in swarm.items() if isinstance(res, dict) and "signature" in res)
        return {"swarm entries are the account's swarm": set(swarm) == want,
                "every member's signature verifies": signed}

    # -- requests -------------------------------------------------------------------------------
    async def store(self, acct: Account, data: bytes, ts: int, node: Snode, *, ttl: int = TTL,
                    namespace: int = 0) -> Reply:
        return await self.wire.store(acct, data, namespace=namespace, ttl=ttl, timestamp=ts, node=node)

    async def rpc(self, node: Snode, method: str, params: Any) -> Reply:
        return await self.wire.rpc(node, method, params)


Case = Callable[[Side], Awaitable[None]]


async def case_directory(s: Side) -> None:
    acct = account("directory")
    syms = s.symbols.copy()
    node = s.member(acct)
    r = await s.rpc(node, "info", {})
    info = r.json if r.status == 200 else {}
    s.record("info", r, syms, version=info.get("version"), hf=info.get("hf"))
    for probe, at in (("get_swarm", node), ("get_swarm from a non-member", s.outsider(acct))):
        r = await s.rpc(at, "get_swarm", {"pubkey": acct.pubkey})
        body = json.loads(r.body) if r.status == 200 else {}
        listed = {sn.get("pubkey_ed25519") for sn in body.get("snodes", [])}
        s.record(probe, r, syms, **{
            "snodes are the account's swarm": listed == {n.ed25519 for n in s.members(acct)},
            "swarm is the account's swarm id": body.get("swarm") == f"{s.swarm_id(acct):x}"})


async def case_store_retrieve(s: Side) -> None:
    acct = account("store-retrieve")
    syms = s.symbols.copy()
    node = s.member(acct)
    ts = s.sent_now()
    hashes = []
    for i in range(3):
        t = syms.time(f"<T{i}>", ts + i)
        syms.time(f"<T{i}+ttl>", t + TTL)
        data = f"differential message {i}".encode()
        hashes.append(acct.hash_of(data))
        r = await s.store(acct, data, t, node)
        if i == 0:
            body = s.record("store", r, syms, **s.member_facts(r.json if r.status == 200 else None, acct,
                                                                  lambda res: res.get("hash", "")))
            assert body is not None
    r = await s.store(acct, b"differential message 0", ts, node)
    s.record("store (duplicate)", r, syms)
    for probe, extra in (("retrieve", {}),
                         ("retrieve with last_hash", {"last_hash": hashes[0]}),
                         ("retrieve with last_hash = newest", {"last_hash": hashes[2]}),
                         ("retrieve page 1 (max_count 1)", {"max_count": 1}),
                         ("retrieve page 2 (max_count 1, last_hash)", {"max_count": 1, "last_hash": hashes[0]}),
                         ("retrieve max_size -1", {"max_size": -1})):
        s.record(probe, await s.wire.retrieve(acct, node=node, **extra), syms)


async def _store_n(s: Side, acct: Account, node: Snode, syms: Symbols, n: int, tag: str) -> list[str]:
    ts = s.sent_now()
    hashes = []
    for i in range(n):
        t = syms.time(f"<{tag}{i}>", ts + i)
        syms.time(f"<{tag}{i}+ttl>", t + TTL)
        data = f"{tag} {i}".encode()
        (await s.store(acct, data, t, node)).expect(200)
        hashes.append(acct.hash_of(data))
    return hashes


async def case_delete(s: Side) -> None:
    acct = account("delete")
    syms = s.symbols.copy()
    node = s.member(acct)
    h = await _store_n(s, acct, node, syms, 3, "D")
    asked = [h[1], FAKE]
    r = await s.rpc(node, "delete", {"messages": asked, **acct.auth("delete" + "".join(asked))})
    s.record("delete", r, syms, **s.member_facts(
        r.json if r.status == 200 else None, acct,
        lambda res: acct.prefixed + "".join(asked) + "".join(res.get("deleted", []))))
    s.record("retrieve after delete", await s.wire.retrieve(acct, node=node), syms)
    r = await s.rpc(node, "delete", {"messages": [FAKE], "required": True, **acct.auth("delete" + FAKE)})
    s.record("delete required, nothing deleted", r, syms)

    ts = syms.time("<delete_all ts>", s.sent_now())
    before = await s.rpc(node, "delete_before", {"pubkey": acct.pubkey, "before": h[0],
                                                 "signature": acct.sign(f"delete_before{h[0]}")})
    s.record("delete_before (bad before: a hash)", before, syms)
    d_ts = [t for t, name in syms.ints.items() if name == "<D0>"][0]
    params = {"before": d_ts, **acct.auth(f"delete_before{d_ts}")}
    r = await s.rpc(node, "delete_before", params)
    s.record("delete_before", r, syms, **s.member_facts(
        r.json if r.status == 200 else None, acct,
        lambda res: acct.prefixed + str(d_ts) + "".join(res.get("deleted", []))))
    params = {"timestamp": ts, **acct.auth(f"delete_all{ts}")}
    r = await s.rpc(node, "delete_all", params)
    s.record("delete_all", r, syms, **s.member_facts(
        r.json if r.status == 200 else None, acct,
        lambda res: acct.prefixed + str(ts) + "".join(res.get("deleted", []))))
    s.record("retrieve after delete_all", await s.wire.retrieve(acct, node=node), syms)


async def case_expire(s: Side) -> None:
    acct = account("expire")
    syms = s.symbols.copy()
    node = s.member(acct)
    h = await _store_n(s, acct, node, syms, 2, "E")
    t0 = [t for t, name in syms.ints.items() if name == "<E0>"][0]

    async def expire(probe: str, expiry: int, mode: str, **facts: Any) -> Any:
        params: dict[str, Any] = {"messages": h, "expiry": expiry,
                                  **acct.auth(f"expire{mode}{expiry}{''.join(h)}")}
        if mode:
            params[mode] = True
        r = await s.rpc(node, "expire", params)
        body = r.json if r.status == 200 else None
        s.record(probe, r, syms, **facts, **s.member_facts(
            body, acct, lambda res: (acct.prefixed + str(res.get("expiry")) + "".join(h)
                                     + "".join(res.get("updated", []))
                                     + "".join(f"{k}{v}" for k, v in sorted(res.get("unchanged", {}).items())))))
        return body

    await expire("expire (extend)", syms.time("<E0+2h>", t0 + 2 * TTL), "extend")
    await expire("expire (shorten)", syms.time("<E0+30min>", t0 + TTL // 2), "shorten")
    await expire("expire (plain)", syms.time("<E0+3h>", t0 + 3 * TTL), "")
    ts = syms.time("<get_expiries ts>", s.sent_now())
    asked = [*h, FAKE]
    r = await s.rpc(node, "get_expiries", {"messages": asked, "timestamp": ts,
                                           **acct.auth(f"get_expiries{ts}{''.join(asked)}")})
    s.record("get_expiries", r, syms)
    far = s.wire.now() + 40 * DAY_MS
    body = await expire("expire beyond 30 days", far, "")
    expiries = {res.get("expiry") for res in (body or {}).get("swarm", {}).values() if isinstance(res, dict)}
    s.probes["expire beyond 30 days"].facts["expiry capped at now + 30 days (±60 s)"] = bool(expiries) and all(
        isinstance(e, int) and abs(e - (s.wire.now() + 30 * DAY_MS)) < 60_000 for e in expiries)
    # the entry node tolerates 60 s (signature window); 50 s is inside it on every clock here
    for probe, ago in (("expire 50 s in the past", 50_000), ("expire 120 s in the past", 120_000)):
        past = syms.time(f"<{ago // 1000} s ago>", s.wire.now() - ago)
        r = await s.rpc(node, "expire", {"messages": h, "expiry": past,
                                         **acct.auth(f"expire{past}{''.join(h)}")})
        s.record(probe, r, syms)


def _revoke_message(group: Account, ts: int, token: bytes) -> Callable[[dict[str, Any]], bytes]:
    """What each member signs for revoke/unrevoke: PUBKEY_HEX ‖ TIMESTAMP ‖ TOKEN BYTES."""
    return lambda _res: group.prefixed.encode() + str(ts).encode() + token


async def case_subaccount(s: Side) -> None:
    """A group admin, a subaccount with read and write (token 03 ‖ flags ‖ 00 00 ‖ member key,
    signed by the admin), its store and retrieve in namespace 42, revoke / unrevoke; expire_all."""
    group, member = account("subaccount group", "group"), account("subaccount member", "group")
    syms = s.symbols.copy()
    node = s.member(group)
    token = bytes([0x03, 0b011, 0, 0]) + member.identity.ed25519_public
    sub = {"subaccount": b64(token), "subaccount_sig": group.sign(token)}
    ts = syms.time("<S0>", s.sent_now())
    syms.time("<S0+ttl>", ts + TTL)
    s.record("store by a subaccount", await s.rpc(node, "store", {
        "pubkey": group.pubkey, "namespace": 42, "timestamp": ts, "ttl": TTL, "data": b64(b"by a subaccount"),
        "signature": member.sign(f"store42{ts}"), **sub}), syms)

    async def sub_retrieve(probe: str) -> None:
        t = s.wire.now()
        s.record(probe, await s.rpc(node, "retrieve", {"pubkey": group.pubkey, "namespace": 42, "timestamp": t,
                                                       "signature": member.sign(f"retrieve42{t}"), **sub}), syms)

    await sub_retrieve("retrieve by a subaccount")
    for method, key in (("revoke_subaccount", "revoke"), ("unrevoke_subaccount", "unrevoke")):
        t = syms.time(f"<{method} ts>", s.sent_now())
        r = await s.rpc(node, method, {"pubkey": group.pubkey, key: [token.hex()], "timestamp": t,
                                       "signature": group.sign(f"{method}{t}".encode() + token)})
        s.record(method, r, syms, **s.member_facts(
            r.json if r.status == 200 else None, group,
            _revoke_message(group, t, token)))
        if method == "revoke_subaccount":
            await sub_retrieve("retrieve by a revoked subaccount")
            t = s.wire.now()
            s.record("revoked_subaccounts", await s.rpc(node, "revoked_subaccounts", {
                "pubkey": group.pubkey, "timestamp": t, "signature": group.sign(f"revoked_subaccounts{t}")}), syms)
    await sub_retrieve("retrieve by an unrevoked subaccount")

    acct = account("expire_all", "ed05")
    node = s.member(acct)
    hashes = await _store_n(s, acct, node, syms, 3, "X")
    t1 = [t for t, name in syms.ints.items() if name == "<X1>"][0]
    expiry = syms.time("<X1+ttl/2>", t1 + TTL // 2)
    r = await s.rpc(node, "expire_all", {"pubkey": acct.pubkey, "expiry": expiry,
                                         "signature": acct.sign(f"expire_all{expiry}")})
    s.record("expire_all", r, syms, **s.member_facts(
        r.json if r.status == 200 else None, acct,
        lambda res: acct.prefixed + str(expiry) + "".join(res.get("updated", []))))
    s.record("retrieve after expire_all", await s.wire.retrieve(acct, node=node), syms,
             hashes=len(hashes))


async def case_meta(s: Side) -> None:
    acct = account("meta", "ed05")
    syms = s.symbols.copy()
    node = s.member(acct)
    ts = syms.time("<M0>", s.sent_now())
    syms.time("<M0+ttl>", ts + TTL)
    syms.time("<M1>", ts + 1)
    syms.time("<M1+ttl>", ts + 1 + TTL)

    def store(data: str, t: int) -> dict[str, Any]:
        return {"method": "store", "params": {"pubkey": acct.pubkey, "timestamp": t, "ttl": TTL,
                                              "data": b64(data.encode()), **acct.auth(f"store{t}")}}

    def retrieve() -> dict[str, Any]:
        t = s.wire.now()
        return {"method": "retrieve", "params": {"timestamp": t, **acct.auth(f"retrieve{t}")}}

    info = {"method": "info", "params": {}}
    s.record("batch (store, retrieve, info)",
             await s.rpc(node, "batch", {"requests": [store("batch one", ts), retrieve(), info]}), syms)
    s.record("sequence (store, retrieve)",
             await s.rpc(node, "sequence", {"requests": [store("sequence two", ts + 1), retrieve()]}), syms)
    s.record("batch of 21 (too many)", await s.rpc(node, "batch", {"requests": [info] * 21}), syms)
    s.record("batch with an unknown method",
             await s.rpc(node, "batch", {"requests": [{"method": "fly", "params": {}}]}), syms)
    s.record("ifelse hf_at_least 19 (then)",
             await s.rpc(node, "ifelse", {"if": {"hf_at_least": [19]}, "then": info,
                                          "else": {"method": "get_swarm", "params": {"pubkey": acct.pubkey}}}),
             syms)
    s.record("ifelse hf_before 19 (no else)",
             await s.rpc(node, "ifelse", {"if": {"hf_before": [19]}, "then": info}), syms)


async def case_onion(s: Side) -> None:
    acct = account("onion")
    syms = s.symbols.copy()
    syms.strings[UNKNOWN_HOP.ed25519.hex()] = "<unknown node>"
    dest = s.member(acct)
    path = s.path(dest)
    ts = syms.time("<O0>", s.sent_now())
    syms.time("<O0+ttl>", ts + TTL)
    data = b64(b"through an onion")
    params = {"pubkey": acct.pubkey, "timestamp": ts, "ttl": TTL, "data": data}
    s.record_onion("onion (desktop) store", await s.wire.onion_rpc(dest, "store", params, path=path), syms)
    retrieve = s.wire.retrieve_params(acct)
    s.record_onion("onion (libsession, xchacha20) retrieve",
                   await s.wire.onion_rpc(dest, "retrieve", retrieve, style="libsession",
                                          enc_type="xchacha20", path=path), syms)
    s.record_onion("onion store at a non-member (421)",
                   await s.wire.onion_rpc(s.outsider(acct), "store", params,
                                          path=s.path(s.outsider(acct))), syms)
    built = build_onion(path, UNKNOWN_HOP, json.dumps({"method": "info", "params": {}}).encode())
    s.record_onion("onion to an unknown next hop", await s.wire.send_onion(path[0], built), syms)
    # an onion request for a server behind the exit node (libsession's v4 ``/oxen/v4/lsrpc``
    # requests to SOGS / file servers); the server is a closed loopback port: nothing can leave
    v4 = build_onion(path[:2], path[2], b"l40:{\"method\":\"GET\",\"endpoint\":\"/room\"}e",
                     dest_meta={"host": "127.0.0.1", "target": "/oxen/v4/lsrpc", "method": "POST",
                                "protocol": "https", "port": 9})
    s.record_onion("onion v4 to a server behind the exit node", await s.wire.send_onion(path[0], v4), syms)
    url = f"{path[0].url}/onion_req/v2"
    s.record("no onion v4 endpoint on a node", await s.wire.post(f"{path[0].url}/oxen/v4/lsrpc", b"{}"), syms)
    s.record("onion garbage frame", await s.wire.post(url, b"\x05\x00\x00\x00garbage"), syms)
    bad = build_onion([], path[0], b"{}")
    tampered = bad.frame[:4] + bytes(b ^ 0x55 for b in bad.frame[4:20]) + bad.frame[20:]
    s.record("onion undecryptable ciphertext", await s.wire.post(url, tampered), syms)


async def case_errors(s: Side) -> None:
    acct = account("errors")
    syms = s.symbols.copy()
    node = s.member(acct)
    out = s.outsider(acct)
    ts = s.wire.now()
    s.record("retrieve without signature (timestamp given)",
             await s.rpc(node, "retrieve", {"pubkey": acct.pubkey, "timestamp": ts}), syms)
    s.record("retrieve without any auth", await s.rpc(node, "retrieve", {"pubkey": acct.pubkey}), syms)
    s.record("retrieve with a bad signature",
             await s.rpc(node, "retrieve", {**acct.auth(f"retrieve{ts + 1}"), "timestamp": ts}), syms)
    s.record("delete_all without signature",
             await s.rpc(node, "delete_all", {"pubkey": acct.pubkey, "timestamp": ts}), syms)
    s.record("store to namespace 3 without signature",
             await s.rpc(node, "store", {"pubkey": acct.pubkey, "timestamp": ts, "ttl": TTL,
                                         "data": b64(b"x"), "namespace": 3}), syms)
    s.record("store with a bad pubkey (62 hex)",
             await s.rpc(node, "store", {"pubkey": acct.pubkey[:62], "timestamp": ts, "ttl": TTL,
                                         "data": b64(b"x")}), syms)
    for probe, at, method, params in (
            ("store at a non-member (421)", out, "store",
             {"pubkey": acct.pubkey, "timestamp": ts, "ttl": TTL, "data": b64(b"x")}),
            ("retrieve at a non-member (421)", out, "retrieve", s.wire.retrieve_params(acct))):
        r = await s.rpc(at, method, params)
        body = json.loads(r.body) if r.status == 421 else {}
        listed = {sn.get("pubkey_ed25519") for sn in body.get("snodes", [])}
        s.record(probe, r, syms, **{"421 lists the account's swarm": listed == {n.ed25519 for n in s.members(acct)}})
    s.record("store of 76,801 bytes (too large)",
             await s.rpc(node, "store", {"pubkey": acct.pubkey, "timestamp": ts, "ttl": TTL,
                                         "data": b64(b"x" * (MAX_BODY + 1))}), syms)
    s.record("store to namespace 40000 (out of range)",
             await s.rpc(node, "store", {"pubkey": acct.pubkey, "timestamp": ts, "ttl": TTL,
                                         "data": b64(b"x"), "namespace": 40000}), syms)
    s.record("store with ttl 15 days", await s.store(acct, b"ttl", ts, node, ttl=15 * DAY_MS), syms)
    s.record("store 60 s in the future", await s.store(acct, b"future", ts + 60_000, node), syms)
    s.record("unknown method", await s.rpc(node, "fly", {}), syms)
    s.record("bad JSON", await s.wire.rpc_raw(node, b"{not json"), syms)
    s.record("no params", await s.wire.rpc_raw(node, b'{"method": "info"}'), syms)
    s.record("get_swarm without pubkey", await s.rpc(node, "get_swarm", {}), syms)
    s.record("unknown path", await s.wire.post(f"{node.url}/storage_rpc/v2", b"{}"), syms)


CASES: tuple[Case, ...] = (case_directory, case_store_retrieve, case_delete, case_expire,
                           case_subaccount, case_meta, case_onion, case_errors)
