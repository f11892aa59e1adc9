"""Wire-conformance suite: what independent, production Session clients send to and expect from
the network, checked against a running testnet.

Every check in this directory is derived from the public source of a production client or server
(session-desktop, libsession-util, session-storage-server and its ``network-tests/``, oxen-core);
docs/conformance.md lists each check with its source.  The tests talk to the testnet the way those
clients do: plain aiohttp, TLS verification off for service nodes, and ``nodes.protocol`` for the
cryptography.  They deliberately do not use ``harness.client`` (that is the thing under test
elsewhere) and they are written to production behaviour: a failing test is a deviation of the
testnet, never a reason to relax the check.

This module holds the client side (accounts, a minimal storage-RPC/onion client, decoders); the
fixtures are in conftest.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import ssl
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from nacl import bindings

from nodes.protocol import onion as onion_lib
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, verify_ed25519
from nodes.protocol.swarm import UNASSIGNED_SWARM, swarm_for, swarm_space

TIMEOUT = aiohttp.ClientTimeout(total=30)
#: what clients use to recognise a sane server timestamp (session-desktop getNetworkTime.ts:
#: anything below 1 Jan 2021 is ignored)
MIN_SANE_T = 1609419600 * 1000
DAY_MS = 24 * 3600 * 1000

#: every key a swarm member has in get_swarm / 421 bodies (session-storage-server
#: oxenss/snode/swarm.cpp snode_fields)
SNODE_KEYS = {"address", "ip", "port", "port_https", "port_omq", "port_quic", "pubkey_ed25519",
              "pubkey_legacy", "pubkey_x25519"}


# ------------------------------------------------------------------------------------------------
# small value helpers
# ------------------------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def is_hex(s: Any, length: int | None = None) -> bool:
    if not isinstance(s, str) or (length is not None and len(s) != length):
        return False
    try:
        bytes.fromhex(s)
    except ValueError:
        return False
    return True


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_Z32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def zbase32(data: bytes) -> str:
    """z-base-32 (what oxenc::to_base32z produces for the deprecated ``address`` field)."""
    bits = int.from_bytes(data, "big")
    nbits = len(data) * 8
    out = []
    for shift in range(nbits - 5, -5, -5):
        idx = (bits >> shift) & 31 if shift >= 0 else (bits << -shift) & 31
        out.append(_Z32[idx])
    return "".join(out)


def assert_t_hf(body: dict[str, Any], *, what: str) -> None:
    """The ``t``/``hf`` pair the storage server adds to its JSON responses
    (request_handler.cpp add_misc_response_fields): ``t`` is integer epoch milliseconds close to
    now (desktop uses it for its clock offset), ``hf`` is ``[major, minor]``."""
    assert isinstance(body, dict), f"{what}: expected a JSON object, got {body!r:.300}"
    t = body.get("t")
    assert is_int(t), f"{what}: 't' must be integer milliseconds, got {t!r}"
    assert t > MIN_SANE_T, f"{what}: 't' = {t} is not epoch milliseconds"
    assert abs(t - int(time.time() * 1000)) < 60_000, f"{what}: 't' = {t} is far from now"
    hf = body.get("hf")
    assert isinstance(hf, list) and len(hf) == 2 and all(is_int(x) and x >= 0 for x in hf), \
        f"{what}: 'hf' must be [major, minor] integers, got {hf!r}"
    # session-desktop handleHardforkResult switches on HF 19.0 / 19.1 features from this value
    assert tuple(hf) >= (19, 1), f"{what}: hf {hf} is older than what current clients require"


# ------------------------------------------------------------------------------------------------
# accounts
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Account:
    """A client account as the different production clients address it.

    ``style``:
    * ``"session"``: a real Session account, ``05`` + X25519, requests carry ``pubkey_ed25519``
      (session-desktop, libsession);
    * ``"ed05"``: ``05`` + the Ed25519 key itself, signed without ``pubkey_ed25519`` (what the
      storage server's own network-tests do, e.g. test_store_retrieve.py);
    * ``"group"``: a ``03`` group, the key is Ed25519 (libsession groups);
    * ``"bare"``: the 64-hex Ed25519 key without a prefix (storage server testnet mode; the
      network-tests' ss.py helpers send this).
    """

    identity: Identity
    style: str = "session"

    @classmethod
    def new(cls, style: str = "session") -> Account:
        return cls(Identity.generate(), style)

    @property
    def pubkey(self) -> str:
        ident = self.identity
        if self.style == "session":
            return "05" + ident.x25519_hex
        if self.style == "ed05":
            return "05" + ident.ed25519_hex
        if self.style == "group":
            return "03" + ident.ed25519_hex
        if self.style == "bare":
            return ident.ed25519_hex
        raise ValueError(f"unknown account style {self.style!r}")

    @property
    def prefixed(self) -> str:
        """The 66-hex form the server uses in its own signatures (``prefixed_hex``)."""
        return self.pubkey if len(self.pubkey) == 66 else "05" + self.pubkey

    def sign(self, msg: str | bytes) -> str:
        raw = msg.encode("ascii") if isinstance(msg, str) else msg
        return b64(self.identity.sign(raw))

    def auth(self, msg: str | bytes) -> dict[str, Any]:
        """``pubkey`` + ``signature`` (+ ``pubkey_ed25519`` for a real Session account)."""
        out: dict[str, Any] = {"pubkey": self.pubkey, "signature": self.sign(msg)}
        if self.style == "session":
            out["pubkey_ed25519"] = self.identity.ed25519_hex
        return out

    def hash_of(self, data: bytes, namespace: int = 0) -> str:
        return message_hash(self.prefixed, namespace, data)


# ------------------------------------------------------------------------------------------------
# service nodes and replies
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Snode:
    """A service node as a client knows it from get_n_service_nodes."""

    ed25519: str
    x25519: str
    ip: str
    port: int
    swarm_id: int

    @property
    def url(self) -> str:
        return f"https://{self.ip}:{self.port}"

    @property
    def hop(self) -> onion_lib.OnionHop:
        return onion_lib.OnionHop.from_hex(self.ed25519, self.x25519)

    def __str__(self) -> str:
        return f"{self.ed25519[:12]}…@{self.ip}:{self.port}"


@dataclass
class Reply:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def content_type(self) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == "content-type":
                return v
        return None

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"{self.url}: HTTP {self.status}, body is not JSON: "
                                 f"{self.text[:300]!r}") from None

    def expect(self, status: int = 200) -> Any:
        """Assert the status and return the parsed JSON body."""
        assert self.status == status, (f"{self.url}: expected HTTP {status}, got {self.status}: "
                                       f"{self.text[:500]!r}")
        return self.json

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.content_type}: {self.text[:300]!r}"


@dataclass
class OnionReply:
    """What came back from the guard: the HTTP reply and, when the destination answered, the
    decrypted ``{"status", "body"}``."""

    http: Reply
    status: int | None = None
    body: str | None = None
    raw: dict[str, Any] | None = None

    @property
    def json(self) -> Any:
        assert self.body is not None, f"no decrypted onion body: {self.http}"
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"onion inner body is not JSON: {self.body[:300]!r}") from None


# ------------------------------------------------------------------------------------------------
# onion request builders
# ------------------------------------------------------------------------------------------------

def _frame(blob: bytes, meta: dict[str, Any], *, sort_keys: bool) -> bytes:
    js = json.dumps(meta, separators=(",", ":"), sort_keys=sort_keys).encode("utf-8")
    return struct.pack("<I", len(blob)) + blob + js


def _seal(hop: onion_lib.OnionHop, plaintext: bytes, enc_type: str) -> tuple[bytes, bytes, bytes]:
    eph_pub, eph_sec = bindings.crypto_box_keypair()
    shared = onion_lib.shared_secret(eph_sec, hop.x25519)
    key = onion_lib.layer_key(enc_type, shared, eph_pub, hop.x25519)
    return onion_lib.encrypt_layer(enc_type, key, plaintext), eph_pub, key


@dataclass
class BuiltOnion:
    frame: bytes
    key: bytes
    enc_type: str


def build_onion(path: Sequence[Snode], dest: Snode | onion_lib.OnionHop, payload: bytes, *,
                enc_type: str = "aes-gcm", enc_label: str | None = None,
                dest_meta: dict[str, Any] | None = None, send_enc_type: bool = True,
                sort_keys: bool = True) -> BuiltOnion:
    """A v2 onion request for ``dest`` through ``path`` (guard first), built independently of
    the testnet's own builder from the layer primitives.  ``enc_label`` is what is written into
    the routing JSON (e.g. the alias ``gcm``); with ``send_enc_type=False`` no ``enc_type`` key is
    written at all (the server must then assume aes-gcm)."""
    label = enc_label if enc_label is not None else enc_type
    dest_hop = dest.hop if isinstance(dest, Snode) else dest
    meta = dest_meta if dest_meta is not None else {"headers": ""}
    blob, eph, key = _seal(dest_hop, _frame(payload, meta, sort_keys=sort_keys), enc_type)
    nxt = dest_hop
    for hop in reversed(path):
        routing: dict[str, Any] = {"destination": nxt.ed25519.hex(), "ephemeral_key": eph.hex()}
        if send_enc_type:
            routing["enc_type"] = label
        blob, eph, _ = _seal(hop.hop, _frame(blob, routing, sort_keys=sort_keys), enc_type)
        nxt = hop.hop
    outer: dict[str, Any] = {"ephemeral_key": eph.hex()}
    if send_enc_type:
        outer["enc_type"] = label
    return BuiltOnion(_frame(blob, outer, sort_keys=sort_keys), key, enc_type)


def desktop_onion(path: Sequence[Snode], dest: Snode | onion_lib.OnionHop, payload: bytes,
                  headers: dict[str, str] | None = None) -> BuiltOnion:
    """An onion request exactly as session-desktop builds it for a snode destination
    (ts/session/apis/snode_api/onions.ts, sendOnionRequestNoRetries / buildOnionCtxs /
    buildOnionGuardNodePayload): aes-gcm everywhere without ever sending ``enc_type``; the
    destination JSON is ``{"body": null, "headers": {...}}``; each relay JSON is
    ``{"destination": <ed25519 hex>, "ephemeral_key": <hex>}``; the guard JSON is only
    ``{"ephemeral_key": <hex>}``; JSON keys in insertion order (JSON.stringify)."""
    meta = {"body": None,
            "headers": headers if headers is not None else {"Content-Type": "application/json"}}
    return build_onion(path, dest, payload, enc_type="aes-gcm", dest_meta=meta,
                       send_enc_type=False, sort_keys=False)


def libsession_onion(path: Sequence[Snode], dest: Snode | onion_lib.OnionHop, payload: bytes,
                     enc_type: str) -> BuiltOnion:
    """An onion request as libsession-util's onionreq Builder makes it: ``enc_type`` in every
    routing JSON, destination JSON ``{"headers": ""}``, compact key-sorted JSON (nlohmann)."""
    return build_onion(path, dest, payload, enc_type=enc_type)


def decode_onion_response(built: BuiltOnion, body: bytes) -> dict[str, Any]:
    """Decode a destination's answer the way session-desktop does (onions.ts decodeOnionResult /
    processOnionResponse): a JSON ``{"result": b64}`` wrapper is tolerated, otherwise the body is
    base64; decrypt with the destination key; JSON with ``status_code`` or ``status``."""
    text = body.decode("utf-8", "replace").strip()
    try:
        wrapped = json.loads(text)
        if isinstance(wrapped, dict) and isinstance(wrapped.get("result"), str):
            text = wrapped["result"]
    except ValueError:
        pass
    try:
        ciphertext = base64.b64decode(text, validate=True)
    except ValueError:
        raise AssertionError(f"onion response is not base64: {text[:200]!r}") from None
    try:
        plain = onion_lib.decrypt_layer(built.enc_type, built.key, ciphertext)
    except onion_lib.OnionError:
        raise AssertionError("onion response does not decrypt with the destination key") from None
    obj = json.loads(plain)
    assert isinstance(obj, dict), f"decrypted onion response is not an object: {obj!r:.200}"
    return obj


# ------------------------------------------------------------------------------------------------
# the wire
# ------------------------------------------------------------------------------------------------

@dataclass
class Wire:
    """A minimal production-style client session against one testnet."""

    session: aiohttp.ClientSession
    seed_url: str
    seed_https_url: str | None
    nodes: list[Snode] = field(default_factory=list)
    offset_ms: int = 0

    # -- raw HTTP -------------------------------------------------------------------------------
    async def post(self, url: str, data: bytes, headers: dict[str, str] | None = None) -> Reply:
        try:
            async with self.session.post(url, data=data, headers=headers or {}) as resp:
                body = await resp.read()
                return Reply(url, resp.status, {k: v for k, v in resp.headers.items()}, body)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise AssertionError(f"POST {url} failed: {e!r}") from None

    async def get(self, url: str) -> Reply:
        try:
            async with self.session.get(url) as resp:
                body = await resp.read()
                return Reply(url, resp.status, {k: v for k, v in resp.headers.items()}, body)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise AssertionError(f"GET {url} failed: {e!r}") from None

    # -- seed -------------------------------------------------------------------------------------
    async def seed(self, method: str, params: dict[str, Any] | None = None, *,
                   https: bool = False, with_id: bool = True) -> Reply:
        base = self.seed_https_url if https else self.seed_url
        assert base, "the testnet reports no HTTPS seed URL"
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if with_id:
            body["id"] = "0"
        if params is not None:
            body["params"] = params
        return await self.post(f"{base.rstrip('/')}/json_rpc", json.dumps(body).encode(),
                               {"Content-Type": "application/json"})

    async def refresh_nodes(self) -> list[Snode]:
        res = (await self.seed("get_n_service_nodes", {"active_only": True})).expect(200)
        nodes = []
        for sn in res["result"]["service_node_states"]:
            nodes.append(Snode(sn["pubkey_ed25519"], sn["pubkey_x25519"], sn["public_ip"],
                               int(sn["storage_port"]), int(sn["swarm_id"])))
        assert nodes, "the seed lists no active service node"
        self.nodes = nodes
        return nodes

    # -- storage RPC ------------------------------------------------------------------------------
    async def rpc(self, node: Snode, method: str, params: Any, *, jsonrpc: bool = True) -> Reply:
        body: dict[str, Any] = {"method": method, "params": params}
        if jsonrpc:  # session-desktop sessionRpc.ts sends jsonrpc: "2.0" too
            body = {"jsonrpc": "2.0", **body}
        return await self.post(f"{node.url}/storage_rpc/v1", json.dumps(body).encode(),
                               {"Content-Type": "application/json"})

    async def rpc_raw(self, node: Snode, data: bytes) -> Reply:
        return await self.post(f"{node.url}/storage_rpc/v1", data,
                               {"Content-Type": "application/json"})

    def now(self) -> int:
        """Network time in ms (local clock corrected with the nodes' ``t``, as clients do)."""
        return int(time.time() * 1000) + self.offset_ms

    async def sync_clock(self) -> None:
        node = random.choice(self.nodes)
        before = time.time()
        info = (await self.rpc(node, "info", {})).expect(200)
        after = time.time()
        self.offset_ms = int(info["t"] - (before + after) / 2 * 1000)

    # -- swarms -----------------------------------------------------------------------------------
    def swarm_ids(self) -> list[int]:
        return sorted({n.swarm_id for n in self.nodes if n.swarm_id != UNASSIGNED_SWARM})

    def swarm_of(self, account: Account | str) -> list[Snode]:
        pk = account.prefixed if isinstance(account, Account) else account
        sid = swarm_for(swarm_space(pk), self.swarm_ids())
        members = [n for n in self.nodes if n.swarm_id == sid]
        assert members, f"no node of the seed's directory is in swarm {sid:#x}"
        return members

    def member(self, account: Account | str) -> Snode:
        return random.choice(self.swarm_of(account))

    def outsider(self, account: Account | str) -> Snode:
        inside = {n.ed25519 for n in self.swarm_of(account)}
        others = [n for n in self.nodes if n.ed25519 not in inside]
        if not others:
            pytest.skip("the testnet has a single swarm: no node outside the account's swarm")
        return random.choice(others)

    def path_for(self, dest: Snode, length: int = 3) -> list[Snode]:
        """``length`` distinct relays, none of them the destination (as clients pick paths)."""
        pool = [n for n in self.nodes if n.ed25519 != dest.ed25519]
        if len(pool) < length:
            pytest.skip(f"need {length + 1} nodes for an onion path, the testnet has "
                        f"{len(self.nodes)}")
        return random.sample(pool, length)

    # -- common client operations ---------------------------------------------------------------
    async def store(self, account: Account, data: bytes, *, namespace: int = 0,
                    ttl: int | None = 3_600_000, expiry: int | None = None,
                    timestamp: int | None = None, node: Snode | None = None,
                    signed: bool | None = None) -> Reply:
        ts = self.now() if timestamp is None else timestamp
        params: dict[str, Any] = {"pubkey": account.pubkey, "timestamp": ts,
                                  "data": b64(data)}
        if namespace != 0:
            params["namespace"] = namespace
        if expiry is not None:
            params["expiry"] = expiry
        elif ttl is not None:
            params["ttl"] = ttl
        needs_sig = namespace % 10 != 0 if signed is None else signed
        if needs_sig:
            ns = "" if namespace == 0 else str(namespace)
            params.update(account.auth(f"store{ns}{ts}"))
        return await self.rpc(node or self.member(account), "store", params)

    def retrieve_params(self, account: Account, *, namespace: int = 0,
                        last_hash: str | None = None, **extra: Any) -> dict[str, Any]:
        ts = self.now()
        ns = "" if namespace == 0 else str(namespace)
        params: dict[str, Any] = {"timestamp": ts, **account.auth(f"retrieve{ns}{ts}")}
        if namespace != 0:
            params["namespace"] = namespace
        if last_hash is not None:
            params["last_hash"] = last_hash
        params.update(extra)
        return params

    async def retrieve(self, account: Account, *, node: Snode | None = None,
                       namespace: int = 0, last_hash: str | None = None, **extra: Any) -> Reply:
        params = self.retrieve_params(account, namespace=namespace, last_hash=last_hash, **extra)
        return await self.rpc(node or self.member(account), "retrieve", params)

    async def retrieve_all(self, account: Account, *, node: Snode | None = None,
                           namespace: int = 0) -> list[dict[str, Any]]:
        body = (await self.retrieve(account, node=node, namespace=namespace)).expect(200)
        return body["messages"]

    async def wait_retrievable(self, account: Account, node: Snode, hashes: Iterable[str], *,
                               namespace: int = 0, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll ``node`` until it returns every hash (the entry node answered the store; a slow
        peer may apply it a moment later).  Polling is what clients do too."""
        want = set(hashes)
        deadline = time.monotonic() + timeout
        while True:
            msgs = await self.retrieve_all(account, node=node, namespace=namespace)
            if want <= {m["hash"] for m in msgs}:
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError(f"{node} does not return {sorted(want)} after {timeout}s; "
                                     f"it has {[m['hash'] for m in msgs]}")
            await asyncio.sleep(0.2)

    # -- onion requests ---------------------------------------------------------------------------
    async def send_onion(self, guard: Snode, built: BuiltOnion) -> OnionReply:
        http = await self.post(f"{guard.url}/onion_req/v2", built.frame,
                               {"User-Agent": "WhatsApp", "Accept-Language": "en-us"})
        out = OnionReply(http)
        if http.status == 200:
            obj = decode_onion_response(built, http.body)
            out.raw = obj
            status = obj.get("status_code", obj.get("status"))
            assert is_int(status), f"decrypted onion response has no integer status: {obj!r:.300}"
            out.status = status
            inner = obj.get("body")
            out.body = inner if isinstance(inner, str) else json.dumps(inner)
        return out

    async def onion_rpc(self, dest: Snode, method: str, params: dict[str, Any], *,
                        style: str = "desktop", enc_type: str = "aes-gcm",
                        path: Sequence[Snode] | None = None) -> OnionReply:
        path = list(path) if path is not None else self.path_for(dest)
        if style == "desktop":
            payload = json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode()
            built = desktop_onion(path, dest, payload)
        else:
            payload = json.dumps({"method": method, "params": params},
                                 separators=(",", ":")).encode()
            built = libsession_onion(path, dest, payload, enc_type)
        return await self.send_onion(path[0], built)


def verify_node_sig(node_ed25519_hex: str, message: str | bytes, sig_b64: Any, *,
                    what: str) -> None:
    """A swarm member's signature, checked exactly as the storage server's network-tests do
    (VerifyKey(member ed25519).verify(message, b64decode(signature)))."""
    assert isinstance(sig_b64, str), f"{what}: signature must be a base64 string, got {sig_b64!r}"
    try:
        sig = base64.b64decode(sig_b64, validate=True)
    except ValueError:
        raise AssertionError(f"{what}: signature is not base64: {sig_b64!r}") from None
    raw = message.encode("ascii") if isinstance(message, str) else message
    assert verify_ed25519(bytes.fromhex(node_ed25519_hex), raw, sig), (
        f"{what}: signature of {node_ed25519_hex[:12]}… does not verify over {raw[:160]!r}")


# raw TLS helper for requests aiohttp cannot express (a Content-Length without the body)
async def raw_https(url: str, head: bytes, body: bytes = b"", *,
                    first_wait: float = 5.0) -> tuple[int, bytes]:
    """Send ``head`` (request line + headers), wait up to ``first_wait`` seconds for an early
    answer, then the body; return (status, response bytes)."""
    parts = urlsplit(url)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port, ssl=ctx), 10)
    try:
        writer.write(head)
        await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), first_wait)
        except TimeoutError:
            line = b""
        if not line:
            try:
                writer.write(body)
                await writer.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            line = await asyncio.wait_for(reader.readline(), 30)
        rest = b""
        try:
            rest = await asyncio.wait_for(reader.read(4096), 2)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass
        fields = line.split(b" ", 2)
        assert len(fields) >= 2 and fields[0].startswith(b"HTTP/"), f"no HTTP status line: {line!r}"
        return int(fields[1]), line + rest
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass
