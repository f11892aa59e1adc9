#!/usr/bin/env python3
"""A minimal Session client behind the client adapter protocol (docs/client-adapter.md).

Written from the wire protocol alone (/work/shared/PROTOCOL.md: seed JSON-RPC, storage RPC,
Session 1-to-1 message encryption), independently of the session-testnet harness: it imports
nothing from ``harness`` or ``nodes``, only PyNaCl, requests and protobuf. It is the second
client under test of the scenario suites, proving they test the network and not one client:

    testnet suite run delivery --client "python3 examples/adapters/minimal_client.py"

What it does (no onion routing: every storage RPC goes straight to a service node over HTTPS,
self-signed certificates accepted as Session clients do):

* node list from the seed (``get_n_service_nodes``, active only; the ``start`` request's node
  list if the seed does not answer);
* network time from the ``t`` of every storage answer (timestamps and signatures use it; a 406
  re-reads it and rebuilds the message);
* ``send``: the recipient's swarm by ``get_swarm`` to a random node, the message encrypted as
  Session does (padding, Ed25519 signature, sealed box, Envelope in a WebSocketMessage), stored in
  namespace 0 with a 14-day TTL on a random member (the next on failure, the new swarm on a 421);
  ok when a majority of the swarm returned a valid signature of the message hash;
* ``recv``: signed ``retrieve`` (namespace 0, ``last_hash`` per node, following ``more``) from
  every member of the own swarm, de-duplicated by hash, each message's hash checked against its
  data, decrypted and its signature verified.

Options: ``--timeout S`` (one HTTP request, default 5), ``--poll-interval S`` (default 0.5).
Diagnostics go to stderr, protocol answers to stdout.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from nacl import bindings
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

PROTOCOL = 1
NAME = "minimal-session-client (examples/adapters/minimal_client.py)"
VERSION = "1"
TTL_MS = 14 * 24 * 3600 * 1000
MAX_PAGES = 20

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def log(*parts: object) -> None:
    print("minimal-client:", *parts, file=sys.stderr, flush=True)


# -- protobuf (Session's SignalService.proto, the fields 1-to-1 messages use) ----------------------

def _proto_classes() -> dict[str, Any]:
    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="minimal_client/signal.proto",
                                            package="signalservice", syntax="proto2")

    def message(name: str, fields: list[tuple[str, int, int, str | None]],
                enums: dict[str, dict[str, int]] | None = None) -> None:
        m = fd.message_type.add(name=name)
        for ename, values in (enums or {}).items():
            e = m.enum_type.add(name=ename)
            for vname, number in values.items():
                e.value.add(name=vname, number=number)
        for fname, number, ftype, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype,
                            label=F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = type_name

    message("WebSocketRequestMessage", [("verb", 1, F.TYPE_STRING, None),
                                        ("path", 2, F.TYPE_STRING, None),
                                        ("body", 3, F.TYPE_BYTES, None),
                                        ("id", 4, F.TYPE_UINT64, None)])
    message("WebSocketMessage", [("type", 1, F.TYPE_ENUM, ".signalservice.WebSocketMessage.Type"),
                                 ("request", 2, F.TYPE_MESSAGE,
                                  ".signalservice.WebSocketRequestMessage")],
            {"Type": {"UNKNOWN": 0, "REQUEST": 1, "RESPONSE": 2}})
    message("Envelope", [("type", 1, F.TYPE_ENUM, ".signalservice.Envelope.Type"),
                         ("source", 2, F.TYPE_STRING, None),
                         ("timestamp", 5, F.TYPE_UINT64, None),
                         ("content", 8, F.TYPE_BYTES, None)],
            {"Type": {"SESSION_MESSAGE": 6, "CLOSED_GROUP_MESSAGE": 7}})
    message("DataMessage", [("body", 1, F.TYPE_STRING, None),
                            ("timestamp", 7, F.TYPE_UINT64, None)])
    message("Content", [("dataMessage", 1, F.TYPE_MESSAGE, ".signalservice.DataMessage")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"signalservice.{m.name}"))
            for m in fd.message_type}


PB = _proto_classes()


# -- keys, hashes, message encryption ----------------------------------------------------------------

class Identity:
    """An account: Ed25519 signing key, its X25519 keypair and Session ID (05 + X25519 pk)."""

    def __init__(self, seed: bytes) -> None:
        self.signing = SigningKey(seed)
        self.ed_pk = bytes(self.signing.verify_key)
        self.x_pk = bindings.crypto_sign_ed25519_pk_to_curve25519(self.ed_pk)
        self.x_sk = bindings.crypto_sign_ed25519_sk_to_curve25519(seed + self.ed_pk)
        self.session_id = "05" + self.x_pk.hex()

    def sign_b64(self, text: str) -> str:
        return base64.b64encode(self.signing.sign(text.encode()).signature).decode()


def message_hash(session_id: str, namespace: int, data: bytes) -> str:
    h = hashlib.blake2b(digest_size=32)
    h.update(bytes.fromhex(session_id))
    h.update(b"" if namespace == 0 else str(namespace).encode())
    h.update(data)
    return base64.b64encode(h.digest()).decode().rstrip("=")


def b64decode(text: str) -> bytes:
    text = text.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4))


def pad(m: bytes) -> bytes:
    total = -(-(len(m) + 2) // 160) * 160 - 1
    return m + b"\x80" + bytes(total - len(m) - 1)


def unpad(m: bytes) -> bytes:
    end = len(m.rstrip(b"\x00"))
    if end and m[end - 1] == 0x80:
        return m[:end - 1]
    return m


def encrypt(sender: Identity, recipient: str, body: str, timestamp_ms: int) -> bytes:
    """The ``data`` bytes of a store: Session 1-to-1 message from ``sender`` to ``recipient``."""
    recipient_x = bytes.fromhex(recipient[2:])
    content = PB["Content"]()
    content.dataMessage.body = body
    content.dataMessage.timestamp = timestamp_ms
    plain = pad(content.SerializeToString())
    sig = sender.signing.sign(plain + sender.ed_pk + recipient_x).signature
    sealed = SealedBox(PublicKey(recipient_x)).encrypt(plain + sender.ed_pk + sig)
    envelope = PB["Envelope"](type=6, timestamp=timestamp_ms, content=sealed)
    request = PB["WebSocketRequestMessage"](id=0, verb="PUT", path="/api/v1/message",
                                            body=envelope.SerializeToString())
    return bytes(PB["WebSocketMessage"](type=1, request=request).SerializeToString())


@dataclass
class Message:
    sender: str
    body: str
    timestamp_ms: int


def decrypt(me: Identity, data: bytes) -> Message:
    """Open a stored message for ``me``; ValueError says why it cannot be read."""
    try:
        ws = PB["WebSocketMessage"].FromString(data)
        envelope = PB["Envelope"].FromString(ws.request.body)
        opened = SealedBox(PrivateKey(me.x_sk)).decrypt(envelope.content)
    except (DecodeError, CryptoError) as e:
        raise ValueError(f"cannot open: {e}") from None
    if len(opened) < 96 + 1:
        raise ValueError("opened message too short")
    plain, sender_ed, sig = opened[:-96], opened[-96:-64], opened[-64:]
    try:
        VerifyKey(sender_ed).verify(plain + sender_ed + me.x_pk, sig)
    except BadSignatureError:
        raise ValueError("bad signature") from None
    try:
        content = PB["Content"].FromString(unpad(plain))
    except DecodeError as e:
        raise ValueError(f"bad Content: {e}") from None
    sender = "05" + bindings.crypto_sign_ed25519_pk_to_curve25519(sender_ed).hex()
    return Message(sender, content.dataMessage.body,
                   content.dataMessage.timestamp or envelope.timestamp)


# -- the network ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    ip: str
    port: int
    ed25519: str

    @property
    def url(self) -> str:
        return f"https://{self.ip}:{self.port}/storage_rpc/v1"

    def ref(self) -> dict[str, Any]:
        return {"ip": self.ip, "port": self.port, "ed25519": self.ed25519}


class RpcError(Exception):
    """A storage RPC without a usable answer (``status`` None: no HTTP answer at all)."""

    def __init__(self, node: Node, status: int | None, text: str, body: Any = None) -> None:
        super().__init__(f"{node.ip}:{node.port}: " + (f"HTTP {status}: {text[:200]}" if status
                                                       else text))
        self.status = status
        self.text = text
        self.body = body


class Network:
    def __init__(self, seed_url: str, fallback: list[dict[str, Any]], timeout: float) -> None:
        self.seed_url = seed_url.rstrip("/")
        self.fallback = fallback
        self.timeout = timeout
        self.http = requests.Session()
        # certificates are self-signed: not verified (per request: REQUESTS_CA_BUNDLE in the
        # environment would override a session-wide setting)
        #: per node: local time - the node's time (ms), from the "t" of its last answer
        self.offsets: dict[str, int] = {}
        self.nodes: list[Node] = []
        self.swarms: dict[str, list[Node]] = {}

    def now_ms(self, node: Node | None = None) -> int:
        """Network time: the node's clock when it answered before, else the median of all."""
        if node is not None and node.ed25519 in self.offsets:
            offset = self.offsets[node.ed25519]
        elif self.offsets:
            offset = sorted(self.offsets.values())[len(self.offsets) // 2]
        else:
            offset = 0
        return int(time.time() * 1000) - offset

    def bootstrap(self) -> None:
        body = {"jsonrpc": "2.0", "id": 0, "method": "get_n_service_nodes",
                "params": {"active_only": True, "fields": {"public_ip": True, "storage_port": True,
                                                            "pubkey_ed25519": True}}}
        try:
            r = self.http.post(self.seed_url + "/json_rpc", json=body, timeout=self.timeout)
            states = r.json()["result"]["service_node_states"]
            nodes = [Node(s["public_ip"], int(s["storage_port"]), s["pubkey_ed25519"])
                     for s in states if s.get("public_ip") and s.get("public_ip") != "0.0.0.0"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            log(f"seed {self.seed_url} failed ({e}); using the start request's node list")
            nodes = [Node(n["ip"], int(n["storage_port"]), n["pubkey_ed25519"]) for n in self.fallback]
        if not nodes:
            raise RuntimeError(f"no service node known (seed {self.seed_url})")
        self.nodes = nodes

    def rpc(self, node: Node, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            r = self.http.post(node.url, json={"method": method, "params": params}, verify=False,
                               timeout=self.timeout)
        except requests.RequestException as e:
            raise RpcError(node, None, f"{type(e).__name__}: {e}") from None
        data: Any = None
        try:
            data = r.json()
        except ValueError:
            pass
        if isinstance(data, dict) and isinstance(data.get("t"), int):
            self.offsets[node.ed25519] = int(time.time() * 1000) - data["t"]
        if r.status_code != 200:
            raise RpcError(node, r.status_code, r.text, data)
        if not isinstance(data, dict):
            raise RpcError(node, 200, f"not a JSON object: {r.text[:200]!r}")
        return data

    def resync(self, node: Node) -> None:
        try:
            self.rpc(node, "info", {})
        except RpcError:
            pass

    @staticmethod
    def parse_swarm(body: Any) -> list[Node]:
        out = []
        for s in (body or {}).get("snodes", []) if isinstance(body, dict) else []:
            try:
                out.append(Node(s["ip"], int(s.get("port_https") or s["port"]), s["pubkey_ed25519"]))
            except (KeyError, TypeError, ValueError):
                continue
        return [n for n in out if n.ip and n.ip != "0.0.0.0"]

    def swarm(self, session_id: str, refresh: bool = False) -> list[Node]:
        if not refresh and self.swarms.get(session_id):
            return self.swarms[session_id]
        errors: list[str] = []
        for round_ in range(2):  # the second round with a fresh node list from the seed
            if round_ or not self.nodes:
                self.bootstrap()
            for node in random.sample(self.nodes, min(4, len(self.nodes))):
                try:
                    members = self.parse_swarm(self.rpc(node, "get_swarm", {"pubkey": session_id}))
                except RpcError as e:
                    errors.append(str(e))
                    continue
                if members:
                    self.swarms[session_id] = members
                    return members
        raise RuntimeError(f"cannot find the swarm of {session_id}: {'; '.join(errors[-4:])}")


# -- the client ----------------------------------------------------------------------------------

class MinimalClient:
    def __init__(self, net: Network, me: Identity, poll_interval: float) -> None:
        self.net = net
        self.me = me
        self.poll_interval = poll_interval
        self.last_hash: dict[str, str] = {}
        self.seen: set[str] = set()

    def send(self, to: str, body: str) -> dict[str, Any]:
        started = time.time()
        if len(to) != 66 or not to.startswith("05"):
            raise ValueError(f"cannot send to {to!r}: not a 05 Session ID")
        bytes.fromhex(to)
        attempts: list[dict[str, Any]] = []
        tried: set[Node] = set()
        errors: list[str] = []
        ts = self.net.now_ms()
        data = encrypt(self.me, to, body, ts)
        h = message_hash(to, 0, data)
        for _ in range(8):
            members = self.net.swarm(to)
            fresh = [m for m in members if m not in tried]
            if not fresh:
                break
            node = random.choice(fresh)
            tried.add(node)
            a = {"method": "store", "path": [], "destination": node.ref(), "started_at": time.time(),
                 "ok": False}
            attempts.append(a)
            t0 = time.monotonic()
            try:
                res = self.net.rpc(node, "store", {"pubkey": to, "ttl": TTL_MS, "timestamp": ts,
                                                   "data": base64.b64encode(data).decode(),
                                                   "namespace": 0})
                a["http_status"] = 200
                confirmed = self.confirmations(res, h, members)
                need = len(members) // 2 + 1
                if confirmed < need:
                    raise RpcError(node, 200, f"only {confirmed} of {need} swarm members confirmed {h}")
            except RpcError as e:
                a.update(elapsed_ms=(time.monotonic() - t0) * 1000, error=str(e),
                         http_status=e.status)
                errors.append(str(e))
                if e.status == 421:  # wrong swarm: the answer names the right one
                    new = self.net.parse_swarm(e.body)
                    self.net.swarms[to] = new or self.net.swarm(to, refresh=True)
                    tried.clear()
                elif e.status in (406, 425):  # our clock is off: re-read it, rebuild the message
                    self.net.resync(node)
                    ts = self.net.now_ms(node)
                    data = encrypt(self.me, to, body, ts)
                    h = message_hash(to, 0, data)
                    tried.discard(node)
                continue
            a.update(ok=True, elapsed_ms=(time.monotonic() - t0) * 1000)
            return {"hash": h, "timestamp": ts, "started_at": started, "ended_at": time.time(),
                    "destination": node.ref(), "confirmations": confirmed, "attempts": attempts}
        raise OpError(f"message to {to} not stored after {len(attempts)} attempt(s): "
                         + "; ".join(errors[-4:]),
                         {"hash": h, "timestamp": ts, "started_at": started, "ended_at": time.time(),
                          "attempts": attempts})

    @staticmethod
    def confirmations(res: dict[str, Any], h: str, members: list[Node]) -> int:
        known = {m.ed25519 for m in members}
        n = 0
        for ed, r in (res.get("swarm") or {}).items():
            if ed not in known or not isinstance(r, dict) or r.get("hash") != h:
                continue
            try:
                VerifyKey(bytes.fromhex(ed)).verify(h.encode(), b64decode(str(r.get("signature"))))
            except (BadSignatureError, ValueError, TypeError):
                continue
            n += 1
        return n

    def poll(self, node: Node, found: list[dict[str, Any]], bad: list[dict[str, str]]) -> dict[str, Any]:
        before = self.last_hash.get(node.ed25519, "")
        count = 0
        for _ in range(MAX_PAGES):
            ts = self.net.now_ms(node)
            res = self.net.rpc(node, "retrieve", {
                "pubkey": self.me.session_id, "namespace": 0,
                "last_hash": self.last_hash.get(node.ed25519, ""), "timestamp": ts,
                "signature": self.me.sign_b64(f"retrieve{ts}"),
                "pubkey_ed25519": self.me.ed_pk.hex()})
            msgs = [m for m in res.get("messages") or [] if isinstance(m, dict)]
            count += len(msgs)
            for m in msgs:
                self.accept(m, node, found, bad)
            hashes = [m["hash"] for m in msgs if isinstance(m.get("hash"), str)]
            if hashes:
                self.last_hash[node.ed25519] = hashes[-1]
            if not (res.get("more") and hashes):
                break
        return {**node.ref(), "namespace": 0, "last_hash_before": before, "count": count,
                "last_hash_after": self.last_hash.get(node.ed25519, "")}

    def accept(self, m: dict[str, Any], node: Node, found: list[dict[str, Any]],
               bad: list[dict[str, str]]) -> None:
        h = m.get("hash")
        if not isinstance(h, str) or h in self.seen:
            return
        self.seen.add(h)
        try:
            data = b64decode(str(m.get("data")))
            if message_hash(self.me.session_id, 0, data) != h:
                raise ValueError("hash does not match the data")
            msg = decrypt(self.me, data)
        except ValueError as e:
            bad.append({"hash": h, "error": str(e)})
            return
        found.append({"sender": msg.sender, "body": msg.body, "hash": h,
                      "timestamp": msg.timestamp_ms, "namespace": 0, "node": node.ed25519})

    def recv(self, timeout: float) -> dict[str, Any]:
        started = time.time()
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        bad: list[dict[str, str]] = []
        polled: list[dict[str, Any]] = []
        succeeded = False
        errors: list[str] = []
        while True:
            try:
                members = self.net.swarm(self.me.session_id)
            except RuntimeError as e:
                members, errors = [], [str(e)]
            for node in members:
                try:
                    polled.append(self.poll(node, found, bad))
                    succeeded = True
                except RpcError as e:
                    errors.append(str(e))
                    if e.status == 421:
                        self.net.swarms.pop(self.me.session_id, None)
                    elif e.status in (406, 425):  # its clock differs: read it for the next poll
                        self.net.resync(node)
            if found or time.monotonic() >= deadline:
                break
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
        times = {"started_at": started, "ended_at": time.time(), "undecryptable": bad,
                 "polled": polled}
        if not succeeded:
            raise OpError("no swarm member answered: " + "; ".join(errors[-4:]), times)
        found.sort(key=lambda f: f["timestamp"])
        return {"messages": found, **times}


class OpError(Exception):
    """A failed op, with the answer fields that describe it."""

    def __init__(self, message: str, fields: dict[str, Any]) -> None:
        super().__init__(message)
        self.fields = fields


# -- the adapter protocol ------------------------------------------------------------------------

class Adapter:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.net: Network | None = None
        self.client: MinimalClient | None = None

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "start":
            if req.get("protocol") != PROTOCOL:
                raise ValueError(f"this adapter speaks protocol {PROTOCOL}, not {req.get('protocol')}")
            self.net = Network(str(req["seed_url"]), list(req.get("nodes") or []), self.args.timeout)
            return {"protocol": PROTOCOL, "adapter": NAME, "version": VERSION}
        if op == "close":
            return {}
        if self.net is None:
            raise ValueError(f"{op} before start")
        if op == "account_new":
            if self.client is not None:
                raise ValueError("this adapter already has an account")
            seed = req.get("seed")
            me = Identity(bytes.fromhex(seed) if seed else os.urandom(32))
            self.client = MinimalClient(self.net, me, self.args.poll_interval)
            return {"session_id": me.session_id}
        if self.client is None:
            raise ValueError(f"{op} before account_new")
        if op == "send":
            return self.client.send(str(req["to"]), str(req["body"]))
        if op == "recv":
            return self.client.recv(float(req.get("timeout") or 0))
        raise ValueError(f"unknown op {op!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per HTTP request")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between polls")
    adapter = Adapter(parser.parse_args(argv))
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the protocol stream
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as e:
            out.write(json.dumps({"id": None, "ok": False, "error": f"malformed request: {e}"}) + "\n")
            out.flush()
            continue
        try:
            answer = {"id": req.get("id"), "ok": True, **adapter.handle(req)}
        except OpError as e:
            answer = {"id": req.get("id"), **e.fields, "ok": False, "error": str(e)}
        except Exception as e:  # every failure is an answer
            log(f"{req.get('op')} failed: {type(e).__name__}: {e}")
            answer = {"id": req.get("id"), "ok": False, "error": f"{type(e).__name__}: {e}",
                      "error_type": type(e).__name__}
        out.write(json.dumps(answer) + "\n")
        out.flush()
        if req.get("op") == "close":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
