"""The client adapter protocol without a network: parsing and validation, the adapter-side
session rules, and :class:`AdapterClient` against tiny fake adapters (a mailbox folder stands in
for the network) — recording like the built-in client, and every way an adapter can break
(garbage, a wrong id, death, a hang, a refused op, children left behind) giving a clear error
that names the command and its last stderr lines, never a hang."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from harness.adapter import (
    AdapterClient,
    AdapterDied,
    AdapterError,
    AdapterProtocolError,
    AdapterStartError,
    AdapterTimeout,
)
from harness.adapter.protocol import (
    PROTOCOL_VERSION,
    Hello,
    ProtocolViolation,
    RecvResult,
    SendResult,
    Timing,
    check_answer,
    decode_line,
    encode,
    parse_request,
    start_request,
)
from harness.adapter.serve import OpFailed, Session
from harness.checks import Verdict, delivery
from harness.client import Account, RetrieveFailed, StoreFailed
from harness.client.errors import ClientError
from harness.recording import HistoryRecorder

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PY = shlex.quote(sys.executable)
SEED_A = "11" * 32
SEED_B = "22" * 32

FAKE = r'''
import base64, hashlib, json, os, subprocess, sys, time
from nacl import bindings
from nacl.signing import SigningKey

mailbox, mode = sys.argv[1], sys.argv[2]
me = None
seen = set()

def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

print("fake adapter up, mode", mode, file=sys.stderr, flush=True)
for line in sys.stdin:
    req = json.loads(line)
    rid, op = req["id"], req["op"]
    if op == "start":
        answer({"id": rid, "ok": True, "adapter": "fake", "version": "0",
                "protocol": 0 if mode == "old-protocol" else req["protocol"]})
    elif op == "account_new":
        ed = bytes(SigningKey(bytes.fromhex(req["seed"])).verify_key)
        me = "05" + bindings.crypto_sign_ed25519_pk_to_curve25519(ed).hex()
        if mode == "wrong-account":
            me = "05" + "ab" * 32
        os.makedirs(os.path.join(mailbox, me), exist_ok=True)
        answer({"id": rid, "ok": True, "session_id": me})
    elif op == "send":
        t0 = time.time()
        if mode == "garbage-on-send":
            print("this is not json", flush=True)
            continue
        if mode == "die-on-send":
            print("fatal: boom while sending", file=sys.stderr, flush=True)
            sys.exit(3)
        if mode == "hang-on-send":
            time.sleep(300)
        if mode == "wrong-id":
            answer({"id": rid + 7, "ok": True})
            continue
        if mode == "refuse-send":
            print("no route to the swarm", file=sys.stderr, flush=True)
            answer({"id": rid, "ok": False, "error": "no route to the swarm",
                    "error_type": "NoRoute", "started_at": t0, "ended_at": time.time()})
            continue
        ts = int(time.time() * 1000)
        h = base64.b64encode(hashlib.blake2b(
            (me + req["to"] + req["body"] + str(ts)).encode(), digest_size=32).digest()).decode()[:43]
        os.makedirs(os.path.join(mailbox, req["to"]), exist_ok=True)
        with open(os.path.join(mailbox, req["to"], h.replace("/", "_")), "w") as f:
            json.dump({"sender": me, "body": req["body"], "hash": h, "timestamp": ts}, f)
        answer({"id": rid, "ok": True, "hash": h, "timestamp": ts, "started_at": t0,
                "ended_at": time.time(), "destination": {"ip": "127.0.0.1", "port": 1,
                                                         "ed25519": "00" * 32},
                "attempts": [{"method": "store", "ok": True, "elapsed_ms": 1.0}]})
    elif op == "recv":
        t0 = time.time()
        deadline = time.monotonic() + req.get("timeout", 0)
        while True:
            folder = os.path.join(mailbox, me)
            new = []
            for name in sorted(os.listdir(folder)):
                if name not in seen:
                    seen.add(name)
                    with open(os.path.join(folder, name)) as f:
                        new.append(json.load(f))
            if new or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if mode == "dup":
            new = new + new
        answer({"id": rid, "ok": True, "messages": new, "started_at": t0, "ended_at": time.time()})
    elif op == "close":
        if mode == "child-and-ignore-close":
            child = subprocess.Popen(["sleep", "300"])
            with open(os.path.join(mailbox, "child.pid"), "w") as f:
                f.write(str(child.pid))
            answer({"id": rid, "ok": True})
            sys.stdin.close()
            time.sleep(300)
        answer({"id": rid, "ok": True})
        break
'''


@pytest.fixture
def fake(tmp_path: Path) -> Any:
    script = tmp_path / "fake_adapter.py"
    script.write_text(FAKE)
    mailbox = tmp_path / "mailbox"
    mailbox.mkdir()

    def command(mode: str = "ok") -> str:
        return f"{PY} {shlex.quote(str(script))} {shlex.quote(str(mailbox))} {mode}"

    command.mailbox = mailbox  # type: ignore[attr-defined]
    return command


@pytest.fixture
def net() -> Any:
    """What AdapterClient.start reads of a testnet (no nodes: nothing to observe)."""
    return SimpleNamespace(name="fake-net", seed_url="http://127.0.0.1:9", nodes=[],
                           topology=SimpleNamespace(seed=7))


@pytest.fixture
def history() -> Any:
    rec = HistoryRecorder(label="adapter unit test")
    yield rec
    rec.close()


# -- protocol ---------------------------------------------------------------------------------------

def test_lines_round_trip_and_bad_lines_say_what_is_wrong() -> None:
    line = encode({"id": 1, "op": "send", "to": "05ab", "body": "héllo\nworld"})
    assert line.endswith("\n") and line.count("\n") == 1
    assert decode_line(line.encode())["body"] == "héllo\nworld"
    for bad, why in [(b"", "empty line"), (b"nope", "not JSON"), (b"[1, 2]", "not an object"),
                     (b"\xff\xfe", "not UTF-8")]:
        with pytest.raises(ProtocolViolation, match=why):
            decode_line(bad)


def test_requests_are_validated_field_by_field() -> None:
    r = parse_request({"id": 3, "op": "recv", "timeout": 2})
    assert (r.id, r.op, r.fields) == (3, "recv", {"timeout": 2.0})
    assert parse_request({"id": 4, "op": "account_new"}).fields == {"seed": None}
    assert parse_request({"id": 4, "op": "account_new", "seed": "AB" * 32}).fields["seed"] == "ab" * 32
    cases = [({"op": "close"}, "'id' must be an integer"),
             ({"id": True, "op": "close"}, "'id' must be an integer"),
             ({"id": 1, "op": "fly"}, "unknown op 'fly'"),
             ({"id": 1, "op": "send", "body": "x"}, "required field 'to' missing"),
             ({"id": 1, "op": "send", "to": "05", "body": 5}, "'body' must be a string"),
             ({"id": 1, "op": "recv", "timeout": -1}, "'timeout' must be >= 0"),
             ({"id": 1, "op": "recv", "timeout": "soon"}, "'timeout' must be a number"),
             ({"id": 1, "op": "account_new", "seed": "xyz"}, "64 hex characters"),
             ({"id": 1, "op": "start", "seed_url": "http://x"}, "'protocol' missing"),
             ({"id": 1, "op": "start", "protocol": 1, "seed_url": "u", "nodes": [1]}, "'nodes'")]
    for obj, why in cases:
        with pytest.raises(ProtocolViolation, match=why):
            parse_request(obj)


def test_start_request_carries_seed_url_nodes_and_testnet() -> None:
    node = SimpleNamespace(name="sn01", public_ip="127.1.1.1", storage_port=22021,
                           pubkey_ed25519="aa" * 32, pubkey_x25519="bb" * 32, swarm_id=5)
    net = SimpleNamespace(name="t", seed_url="http://127.0.0.1:22023", nodes=[node],
                          topology=SimpleNamespace(seed=42))
    req = start_request(net)
    assert req == {"op": "start", "protocol": PROTOCOL_VERSION, "seed_url": "http://127.0.0.1:22023",
                   "nodes": [{"name": "sn01", "ip": "127.1.1.1", "storage_port": 22021,
                              "pubkey_ed25519": "aa" * 32, "pubkey_x25519": "bb" * 32,
                              "swarm_id": 5}],
                   "testnet": {"name": "t", "seed": "42"}}
    assert parse_request({"id": 0, **req}).fields["seed_url"] == net.seed_url


def test_answers_are_validated() -> None:
    assert check_answer({"id": 2, "ok": True}, 2, "send")["ok"] is True
    for obj, why in [({"id": 3, "ok": True}, "'id' is 3, expected 2"),
                     ({"ok": True}, "'id' is 'missing'"),
                     ({"id": None, "ok": False, "error": "bad"}, "could not read a request"),
                     ({"id": 2, "ok": "yes"}, "'ok' must be true or false"),
                     ({"id": 2, "ok": False}, "'error' missing")]:
        with pytest.raises(ProtocolViolation, match=why):
            check_answer(obj, 2, "send")
    with pytest.raises(ProtocolViolation, match="speaks protocol 9"):
        Hello.from_answer({"ok": True, "protocol": 9, "adapter": "x"})
    with pytest.raises(ProtocolViolation, match="43-character"):
        SendResult.from_answer({"ok": True, "hash": "short"})
    with pytest.raises(ProtocolViolation, match="'messages' missing"):
        RecvResult.from_answer({"ok": True})
    with pytest.raises(ProtocolViolation, match=r"messages\[0\].*'sender' missing"):
        RecvResult.from_answer({"ok": True, "messages": [{"body": "b", "hash": "h"}]})
    with pytest.raises(ProtocolViolation, match="'started_at' must be a number"):
        SendResult.from_answer({"ok": True, "started_at": "now"})
    r = RecvResult.from_answer({"ok": False, "error": "down"})
    assert r.messages == [] and r.error == "down"


def test_adapter_times_are_used_only_inside_the_harness_window() -> None:
    assert Timing(10.5, 11.0).within(10.0, 12.0) == (10.5, 11.0)
    assert Timing(9.0, 13.0).within(10.0, 12.0) == (10.0, 12.0)  # another clock: ignored
    assert Timing(None, None).within(10.0, 12.0) == (10.0, 12.0)


# -- adapter side -----------------------------------------------------------------------------------

class FakeHandler:
    name = "fake handler"
    version = "1"

    def __init__(self) -> None:
        self.closed = 0

    def start(self, seed_url: str, nodes: list[dict[str, Any]], testnet: dict[str, Any]) -> None:
        self.seed_url = seed_url

    def account_new(self, seed_hex: str | None) -> str:
        return "05" + "cd" * 32

    def send(self, to: str, body: str) -> dict[str, Any]:
        if body == "fail":
            raise OpFailed("nope", hash="h" * 43, error_type="StoreFailed")
        if body == "crash":
            raise RuntimeError("client bug")
        return {"hash": "h" * 43}

    def recv(self, timeout: float) -> dict[str, Any]:
        return {"messages": []}

    def close(self) -> None:
        self.closed += 1


def test_adapter_session_enforces_the_order_and_answers_every_line() -> None:
    h = FakeHandler()
    s = Session(h)

    def ask(obj: Any) -> dict[str, Any]:
        return s.answer(obj if isinstance(obj, str) else json.dumps(obj))

    assert ask({"id": 0, "op": "send", "to": "05", "body": "x"}) == {
        "id": 0, "ok": False, "error": "send before start", "error_type": "ValueError"}
    assert ask("{not json") ["id"] is None
    assert "unknown op" in ask({"id": 9, "op": "fly"})["error"]
    hello = ask({"id": 1, "op": "start", "protocol": PROTOCOL_VERSION, "seed_url": "http://s"})
    assert hello == {"id": 1, "ok": True, "protocol": PROTOCOL_VERSION, "adapter": "fake handler",
                     "version": "1"}
    assert ask({"id": 2, "op": "recv"})["error"] == "recv before account_new"
    assert ask({"id": 3, "op": "account_new"})["session_id"] == "05" + "cd" * 32
    assert "already has an account" in ask({"id": 4, "op": "account_new"})["error"]
    assert ask({"id": 5, "op": "send", "to": "05", "body": "x"}) == {"id": 5, "ok": True,
                                                                     "hash": "h" * 43}
    failed = ask({"id": 6, "op": "send", "to": "05", "body": "fail"})
    assert failed == {"id": 6, "ok": False, "error": "nope", "hash": "h" * 43,
                      "error_type": "StoreFailed"}
    assert ask({"id": 7, "op": "send", "to": "05", "body": "crash"})["error"] == "client bug"
    assert ask({"id": 8, "op": "close"}) == {"id": 8, "ok": True}
    assert s.closed and h.closed == 1


# -- AdapterClient against fake adapters ----------------------------------------------------------

def test_adapter_client_records_like_the_builtin_client(fake: Any, net: Any, history: Any) -> None:
    with AdapterClient.start(fake(), net, history, seed_hex=SEED_A) as alice, \
            AdapterClient.start(fake(), net, history, seed_hex=SEED_B) as bob:
        assert alice.session_id == Account.from_seed_hex(SEED_A).session_id
        assert alice.hello.adapter == "fake"
        rec = alice.send(bob.session_id, "hi bob")
        assert rec.ok and rec.message_hash and rec.recipient == bob.session_id
        assert rec.account == alice.session_id and rec.ended_at is not None
        assert [a.method for a in rec.attempts] == ["store"] and rec.attempts[0].ok
        bob.send(alice.session_id, "hi alice")
        got = bob.wait_for(count=1, timeout=10)
        assert [(m.sender, m.body, m.hash) for m in got] == [(alice.session_id, "hi bob",
                                                              rec.message_hash)]
        assert [m.body for m in alice.wait_for(lambda ms: len(ms) == 1, timeout=10)] == ["hi alice"]
        assert bob.receive() == []
    h = history.collect()
    assert h.sent[rec.op_id] == {"to": bob.session_id, "body": "hi bob"}
    assert {d["account"] for d in h.deliveries} == {alice.session_id, bob.session_id}
    assert all(r.ok for r in h.records) and len(h.receives) >= 3
    result = delivery(h)
    assert result.verdict == Verdict.OK, result
    assert result.evidence["delivered"] == 2


def test_a_duplicate_the_adapter_hands_back_fails_the_delivery_check(fake: Any, net: Any,
                                                                     history: Any) -> None:
    with AdapterClient.start(fake(), net, history, seed_hex=SEED_A) as alice, \
            AdapterClient.start(fake("dup"), net, history, seed_hex=SEED_B) as bob:
        alice.send(bob.session_id, "once")
        assert len(bob.wait_for(count=1, timeout=10)) == 2
    result = delivery(history.collect())
    assert result.verdict == Verdict.FAILED and "duplicated" in result.summary


def test_a_refused_send_is_store_failed_with_its_record(fake: Any, net: Any, history: Any) -> None:
    with AdapterClient.start(fake("refuse-send"), net, history, seed_hex=SEED_A) as c:
        with pytest.raises(StoreFailed, match="no route to the swarm") as e:
            c.send("05" + "ee" * 32, "lost?")
    rec = e.value.record
    assert rec is not None and not rec.ok and rec.error_type == "NoRoute"
    assert history.history.sent[rec.op_id]["body"] == "lost?"
    assert rec in history.history.records
    assert delivery(history.history).verdict == Verdict.UNKNOWN  # a failed send is not lost


@pytest.mark.parametrize("mode, error, says", [
    ("garbage-on-send", AdapterProtocolError, "not JSON"),
    ("wrong-id", AdapterProtocolError, "'id' is 9, expected 2"),
    ("die-on-send", AdapterDied, "exit status 3"),
])
def test_a_broken_adapter_is_a_clear_error_naming_it_and_its_stderr(
        fake: Any, net: Any, history: Any, mode: str, error: type[AdapterError], says: str) -> None:
    c = AdapterClient.start(fake(mode), net, history, seed_hex=SEED_A)
    with pytest.raises(error) as e:
        c.send("05" + "ee" * 32, "x")
    text = str(e.value)
    assert says in text and fake(mode) in text and "fake adapter up, mode " + mode in text
    if mode == "die-on-send":
        assert "fatal: boom while sending" in text
    assert isinstance(e.value, ClientError) and not c.process.running
    rec = e.value.record
    assert rec is not None and rec.error_type == error.__name__ and rec in history.history.records
    with pytest.raises(AdapterDied, match="the adapter was stopped"):
        c.send("05" + "ee" * 32, "again")
    c.close()  # closing a dead adapter is quiet


def test_a_hanging_adapter_times_out_and_is_killed(fake: Any, net: Any, history: Any) -> None:
    c = AdapterClient.start(fake("hang-on-send"), net, history, seed_hex=SEED_A, send_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(AdapterTimeout, match=r"no answer to send \(request 2\) within 1 s") as e:
        c.send("05" + "ee" * 32, "x")
    assert time.monotonic() - t0 < 10
    assert "fake adapter up" in str(e.value) and not c.process.running
    c.close()


@pytest.mark.parametrize("mode, says", [
    ("old-protocol", "speaks protocol 0"),
    ("wrong-account", "but that seed's Session ID is"),
])
def test_a_wrong_hello_or_account_fails_the_start(fake: Any, net: Any, history: Any, mode: str,
                                                  says: str) -> None:
    with pytest.raises(AdapterProtocolError, match=says):
        AdapterClient.start(fake(mode), net, history, seed_hex=SEED_A)


def test_a_command_that_cannot_run_says_so(net: Any, history: Any, tmp_path: Path) -> None:
    with pytest.raises(AdapterStartError, match="cannot run '/nonexistent/adapter'"):
        AdapterClient.start("/nonexistent/adapter --x", net, history)
    with pytest.raises(AdapterStartError, match="the command is empty"):
        AdapterClient.start("  ", net, history)
    with pytest.raises(AdapterStartError, match="cannot split"):
        AdapterClient.start("adapter 'unclosed", net, history)
    quits = tmp_path / "quits.py"
    quits.write_text("import sys\nprint('missing config file', file=sys.stderr)\nsys.exit(2)\n")
    with pytest.raises(AdapterDied, match="(?s)exit status 2.*missing config file"):
        AdapterClient.start(f"{PY} {quits}", net, history)


def test_close_kills_the_adapter_and_its_children(fake: Any, net: Any, history: Any) -> None:
    c = AdapterClient.start(fake("child-and-ignore-close"), net, history, seed_hex=SEED_A)
    import harness.adapter.client as client_module

    old = client_module.CLOSE_TIMEOUT
    client_module.CLOSE_TIMEOUT = 0.5
    try:
        c.close()
    finally:
        client_module.CLOSE_TIMEOUT = old
    child = int((fake.mailbox / "child.pid").read_text())
    assert not c.process.running
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_adapter_zero_starts_makes_the_seeded_account_and_reports_read_failures(
        net: Any, history: Any) -> None:
    """``testnet client-adapter`` without a network: the account is the seed's, and a read
    that reaches no seed is ``ok: false`` (RetrieveFailed), not a crash."""
    c = AdapterClient.start(f"{PY} -m harness client-adapter --request-timeout 1", net, history,
                            seed_hex=SEED_A)
    try:
        assert c.session_id == Account.from_seed_hex(SEED_A).session_id
        assert c.hello.adapter == "session-testnet built-in client"
        with pytest.raises(RetrieveFailed, match="no seed returned a usable service node list"):
            c.receive()
        assert history.history.receives[-1].error_type == "RetrieveFailed"
    finally:
        c.close()
    assert not c.process.running


# -- the independent minimal client: its wire format is the built-in client's -----------------

def _minimal() -> ModuleType:
    path = ROOT / "examples" / "adapters" / "minimal_client.py"
    spec = importlib.util.spec_from_file_location("minimal_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_minimal_client_messages_are_session_messages() -> None:
    from nodes.protocol.hashing import message_hash
    from nodes.protocol.keys import Identity
    from nodes.protocol.message import decrypt_message, encrypt_message

    mc = _minimal()
    alice, bob = Identity.from_seed_hex(SEED_A), Identity.from_seed_hex(SEED_B)
    m_alice, m_bob = mc.Identity(bytes.fromhex(SEED_A)), mc.Identity(bytes.fromhex(SEED_B))
    assert (m_alice.session_id, m_bob.session_id) == (alice.session_id, bob.session_id)

    data = mc.encrypt(m_alice, bob.session_id, "from the minimal client ✓", 1_700_000_000_123)
    got = decrypt_message(bob, data)
    assert (got.sender, got.body, got.timestamp_ms) == (alice.session_id,
                                                        "from the minimal client ✓",
                                                        1_700_000_000_123)
    assert mc.message_hash(bob.session_id, 0, data) == message_hash(bob.session_id, 0, data)

    data = encrypt_message(bob, alice.session_id, "x" * 500, timestamp_ms=1_700_000_000_456)
    msg = mc.decrypt(m_alice, data)
    assert (msg.sender, msg.body, msg.timestamp_ms) == (bob.session_id, "x" * 500,
                                                        1_700_000_000_456)
    with pytest.raises(ValueError, match="cannot open"):
        mc.decrypt(m_bob, data)  # not for bob
    assert mc.unpad(mc.pad(b"abc")) == b"abc" and len(mc.pad(b"a" * 158)) == 159
    assert len(mc.pad(b"a" * 159)) == 319
    sig = base64.b64decode(m_alice.sign_b64("retrieve123"))
    assert len(sig) == 64


def test_minimal_client_speaks_the_protocol_without_a_network(net: Any, history: Any) -> None:
    cmd = f"{PY} {shlex.quote(str(ROOT / 'examples' / 'adapters' / 'minimal_client.py'))} --timeout 1"
    c = AdapterClient.start(cmd, net, history, seed_hex=SEED_B)
    try:
        assert c.session_id == Account.from_seed_hex(SEED_B).session_id
        with pytest.raises(StoreFailed, match="no service node known|cannot find the swarm"):
            c.send(Account.from_seed_hex(SEED_A).session_id, "nowhere to go")
    finally:
        c.close()
    assert os.path.exists(ROOT / "examples" / "adapters" / "minimal_client.py")


def test_client_adapter_is_a_testnet_command() -> None:
    from click.testing import CliRunner

    from harness.cli import main

    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "client-adapter" in r.output
    r = CliRunner().invoke(main, ["client-adapter", "--help"])
    assert r.exit_code == 0 and "docs/client-adapter.md" in r.output
    r = CliRunner().invoke(main, ["client-adapter", "--poll", "some"])
    assert r.exit_code == 2 and "error:" in r.output
