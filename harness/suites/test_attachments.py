"""Attachments: files sent through the testnet's file server arrive intact, and neither the file
server nor any node learns who uploaded what.

The built-in client encrypts each file as Session does (:mod:`nodes.protocol.attachment`),
uploads it as a v4 onion request whose exit node forwards it to the file server, and sends the
``AttachmentPointer`` in a 1-to-1 message; the recipient downloads it the same way and checks its
MAC and digest. Privacy is asserted from the file server's and the nodes' observations
(:func:`harness.checks.attachment_privacy`) and the client's records
(:func:`harness.checks.privacy`).

Runs on the module testnet (2 swarms x 3 nodes, with its file server).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from harness.checks import attachment_privacy, delivery, privacy
from harness.client import AttachmentRecord, FileServer, FileServerError
from harness.client.cli_attachments import file_server_from
from harness.client.transport import AiohttpTransport, HttpResult
from harness.network import Testnet
from harness.recording import HistoryRecorder
from harness.suites.conftest import Clients
from harness.suites.support import CLIENT
from nodes.protocol.attachment import encrypted_blob_length, largest_plaintext_within

pytestmark = [pytest.mark.attachments, pytest.mark.integration, pytest.mark.builtin_client,
              pytest.mark.backends("process", "docker")]

def _record(net: Testnet) -> Any:
    record = getattr(net.state, "fileserver", None)
    assert record is not None, f"testnet {net.name} has no file server"
    return record


def file_server(net: Testnet) -> FileServer:
    return file_server_from(_record(net), f"testnet {net.name}")


def server_name(net: Testnet) -> str:
    return str(_record(net).name)


def max_file_size(net: Testnet) -> int:
    """The file server's limit, as it reports it (admin state)."""
    return int(net.node_admin(server_name(net), "state")["max_file_size"])


def content(net: Testnet, label: str, size: int) -> bytes:
    """``size`` bytes derived from the testnet seed (a replay uploads the same file)."""
    out = bytearray()
    block = hashlib.sha256(f"{net.topology.seed}/{label}".encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def attachment_records(history: HistoryRecorder, kind: str) -> list[AttachmentRecord]:
    return [r for r in history.history.records if isinstance(r, AttachmentRecord) and r.kind == kind]


def send_and_fetch(clients: Clients, net: Testnet, data: bytes, name: str, **kw: Any) -> bytes:
    """Alice uploads ``data`` and sends it to Bob, who receives the pointer and downloads it."""
    fs = file_server(net)
    alice = clients.builtin(net, file_server=fs, **{**CLIENT, **kw})
    bob = clients.builtin(net, file_server=fs, **{**CLIENT, **kw})
    ref = alice.upload_attachment(data, file_name=name, content_type="application/octet-stream")
    alice.send(bob.session_id, f"here is {name}", attachments=[ref])
    [msg] = bob.wait_for(count=1, timeout=30)
    assert [(a.file_id, a.size, a.digest, a.file_name) for a in msg.attachments] == [
        (ref.file_id, len(data), ref.digest, name)], "the pointer arrived changed"
    got: bytes = bob.download_attachment(msg.attachments[0])
    return got


def test_attachment_round_trip(testnet: Testnet, history: HistoryRecorder,
                               clients: Clients) -> None:
    """A file uploaded through an onion path, announced in a message and downloaded by the
    recipient through another onion path comes back byte for byte, its digest verified."""
    data = content(testnet, "round trip", 300_000)
    assert send_and_fetch(clients, testnet, data, "photo.jpg") == data
    [up], [down] = attachment_records(history, "upload"), attachment_records(history, "download")
    assert up.ok and down.ok and down.details.get("digest_verified") is True
    assert up.blob_bytes == encrypted_blob_length(len(data)) == down.blob_bytes
    assert len(up.path) == 3 and len(down.path) == 3
    history.require(delivery(history.collect()))


def test_attachment_at_and_over_the_size_limit(testnet: Testnet, history: HistoryRecorder,
                                               clients: Clients) -> None:
    """The largest file whose encrypted upload fits the file server's limit goes through
    intact; one byte more (the next size bucket) is refused with a 413 naming the server."""
    limit = max_file_size(testnet)
    n = largest_plaintext_within(limit)
    assert encrypted_blob_length(n) <= limit < encrypted_blob_length(n + 1)
    data = content(testnet, "at the limit", n)
    assert send_and_fetch(clients, testnet, data, "big.bin", request_timeout=30.0) == data
    alice = clients.builtin(testnet, file_server=file_server(testnet),
                            **{**CLIENT, "request_timeout": 30.0})
    with pytest.raises(FileServerError) as info:
        alice.upload_attachment(content(testnet, "over the limit", n + 1))
    assert "413" in str(info.value) and file_server(testnet).base_url in str(info.value)
    failed = attachment_records(history, "upload")[-1]
    assert failed.outcome == "error" and [a.status for a in failed.attempts if a.path] == [413]


class _SignalingTransport(AiohttpTransport):
    """The client's transport, telling the scenario when an upload's onion request is on its
    way (so the file server can be killed while the request is in flight)."""

    def __init__(self, min_bytes: int) -> None:
        super().__init__()
        self.min_bytes = min_bytes
        self.sent = threading.Event()

    async def post(self, url: str, data: bytes, *, timeout: float,
                   content_type: str = "application/octet-stream") -> HttpResult:
        if url.endswith("/onion_req/v2") and len(data) >= self.min_bytes:
            self.sent.set()
        return await super().post(url, data, timeout=timeout, content_type=content_type)


def test_file_server_killed_mid_upload(testnet: Testnet, history: HistoryRecorder,
                                       clients: Clients) -> None:
    """The file server dying while an upload is on its way fails the upload with an error
    naming the server; once it is back, the same upload succeeds and downloads intact."""
    name, fs = server_name(testnet), file_server(testnet)
    data = content(testnet, "mid upload", 1_000_000)
    transport = _SignalingTransport(min_bytes=len(data))
    alice = clients.builtin(testnet, file_server=fs, transport=transport, max_attempts=2, **CLIENT)
    faults = history.faults(testnet)
    # the upload's bytes reach the server 1.5 s after the exit sends them: a kill as soon as the
    # request has left the client lands before the server could have answered
    faults.latency(name, ms=1500)
    outcome: dict[str, Any] = {}

    def upload() -> None:
        try:
            outcome["ref"] = alice.upload_attachment(data, file_name="killed.bin")
        except FileServerError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=upload)
    worker.start()
    assert transport.sent.wait(timeout=60), "the upload never left the client"
    killed = faults.kill(name)
    worker.join(timeout=120)
    assert not worker.is_alive(), "the upload did not end after the file server died"
    assert "error" in outcome, f"the upload succeeded although the file server was killed: {outcome}"
    assert fs.base_url in str(outcome["error"])
    faults.remove(killed)  # undoing the kill starts the file server again
    faults.clear(name)
    testnet.wait_for(lambda: _answers(testnet, name), timeout=60,
                     what=f"file server {name} answering again")
    ref = alice.upload_attachment(data, file_name="killed.bin")
    assert alice.download_attachment(ref) == data


def _answers(net: Testnet, name: str) -> bool:
    try:
        net.node_admin(name, "state")
    except Exception:  # not up yet
        return False
    return True


def test_latency_on_the_file_server(testnet: Testnet, history: HistoryRecorder,
                                    clients: Clients) -> None:
    """800 ms of latency in front of the file server slows uploads and downloads by at least
    that much (the exit's request passes the proxy) and they still succeed."""
    faults = history.faults(testnet)
    faults.latency(server_name(testnet), ms=800)
    data = content(testnet, "latency", 50_000)
    assert send_and_fetch(clients, testnet, data, "slow.bin") == data
    for rec in attachment_records(history, "upload") + attachment_records(history, "download"):
        ok = [a for a in rec.attempts if a.ok and a.path]
        assert ok and ok[-1].elapsed_ms >= 800, (rec.kind, [a.elapsed_ms for a in ok])


# the exit nodes' observations are the evidence that every file request came through an exit
# (on the process backend a real server's forward and the client share the source 127.0.0.1)
@pytest.mark.node_capabilities("observations")
def test_file_server_never_sees_the_uploader(testnet: Testnet, history: HistoryRecorder,
                                             clients: Clients) -> None:
    """The file server sees uploads and downloads only from exit nodes, never a client's
    address; no node sees both the uploader's address and where the file goes (the exit is
    never the guard), and every request was relayed by a node."""
    data = content(testnet, "private", 20_000)
    assert send_and_fetch(clients, testnet, data, "private.txt") == data
    h = history.collect()
    assert server_name(testnet) in h.observations, (
        f"the file server's observations were not collected: {sorted(h.observations)}")
    history.require(attachment_privacy(h), privacy(h))
    r = [x for x in history.results if x.name == "attachment_privacy"][-1]
    assert r.evidence["files"] >= 2 and r.evidence["relayed"] == r.evidence["files"]
