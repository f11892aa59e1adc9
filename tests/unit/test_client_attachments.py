"""harness.client.attachments: upload / send / receive / download through the fake network's
onion paths and its file server (harness.client.fakefiles)."""

from __future__ import annotations

import random

import pytest

from harness.client import (
    Account,
    AttachmentCorrupt,
    AttachmentRecord,
    FileServer,
    FileServerError,
    SessionClient,
    record_from_dict,
)
from harness.client.attachments import file_id_from_url
from harness.client.fakenet import FakeNetwork
from nodes.protocol.attachment import MAX_ATTACHMENT_BYTES, decrypt_attachment

pytestmark = pytest.mark.unit

PHOTO = bytes(range(256)) * 40 + b"tail"


def make(net: FakeNetwork, records: list, seed: int = 7, **kw: object) -> SessionClient:
    kw.setdefault("retry_backoff", 0.001)
    return SessionClient(net.seed_url, Account.generate(), transport=net, sink=records,
                         rng=random.Random(seed), file_server=net.file_server.info, **kw)


async def test_attachment_round_trip_through_onion_paths() -> None:
    net = FakeNetwork()
    records: list = []
    async with make(net, records, 1) as alice, make(net, records, 2) as bob:
        ref = await alice.upload_attachment(PHOTO, file_name="photo.jpg", content_type="image/jpeg")
        stored = net.file_server.files[ref.file_id]
        assert stored != PHOTO and len(stored) > len(PHOTO)  # the server holds ciphertext only
        assert decrypt_attachment(stored, key=ref.key, digest=ref.digest, size=ref.size) == PHOTO
        assert ref.url == f"{net.file_server.info.url}/file/{ref.file_id}"

        sent = await alice.send(bob.session_id, "a photo", attachments=[ref])
        assert sent.details["attachments"][0]["id"] == ref.file_id
        got = (await bob.wait_for(count=1, timeout=5))[0]
        assert got.attachments == (ref,)
        assert got.to_json_dict()["attachments"][0]["file_name"] == "photo.jpg"
        assert await bob.download_attachment(got.attachments[0]) == PHOTO

    # the server was reached only through exit nodes, never from a client
    node_ips = {n.ip for n in net.nodes}
    assert [(m, e) for _, m, e in net.file_server.log] == [
        ("POST", "/file"), ("GET", f"/file/{ref.file_id}")]
    assert {remote for remote, _, _ in net.file_server.log} <= node_ips
    up, down = (r for r in records if isinstance(r, AttachmentRecord))
    assert (up.kind, up.outcome, up.file_id, up.size, up.file_name) == (
        "upload", "ok", ref.file_id, len(PHOTO), "photo.jpg")
    assert up.blob_bytes == len(stored) and up.digest == ref.digest.hex()
    assert len(up.path) == 3 and up.attempts[-1].destination["url"] == net.file_server.info.url
    assert (down.kind, down.outcome, down.details["digest_verified"]) == ("download", "ok", True)
    assert record_from_dict(down.to_dict()) == down


async def test_tampered_blob_fails_verification_with_a_named_error() -> None:
    net = FakeNetwork()
    records: list = []
    async with make(net, records) as alice:
        ref = await alice.upload_attachment(b"secret bytes")
        net.file_server.corrupt_downloads = True
        with pytest.raises(AttachmentCorrupt, match=f"attachment {ref.file_id} .*MAC") as info:
            await alice.download_attachment(ref)
        assert info.value.record is not None and info.value.record.outcome == "error"


async def test_wrong_digest_in_the_pointer_is_refused() -> None:
    net = FakeNetwork()
    async with make(net, []) as alice:
        ref = await alice.upload_attachment(b"secret bytes")
        bad = type(ref)(**{**ref.__dict__, "digest": bytes(32)})
        with pytest.raises(AttachmentCorrupt, match="digest does not match"):
            await alice.download_attachment(bad)


async def test_server_down_names_the_server_and_the_path_then_a_retry_works() -> None:
    net = FakeNetwork()
    records: list = []
    async with make(net, records, max_attempts=2) as alice:
        net.file_server.up = False
        with pytest.raises(FileServerError) as info:
            await alice.upload_attachment(b"x" * 100)
        msg = str(info.value)
        assert net.file_server.info.url in msg and "could not reach the server" in msg
        assert "via path" in msg and "502" in msg
        rec = info.value.record
        assert rec is not None and rec.kind == "upload"
        assert [a.method for a in rec.attempts if a.path] == ["upload", "upload"]
        # the path worked: no path was struck for the server's absence
        assert not any(act.startswith("strike_path") for a in rec.attempts for act in a.actions)
        net.file_server.up = True
        ref = await alice.upload_attachment(b"x" * 100)
        assert ref.file_id in net.file_server.files


async def test_server_5xx_is_retried_4xx_is_final() -> None:
    net = FakeNetwork()
    async with make(net, [], max_attempts=3) as alice:
        net.file_server.fail_uploads = True
        with pytest.raises(FileServerError, match="500") as info:
            await alice.upload_attachment(b"y")
        assert info.value.record is not None
        assert [a.method for a in info.value.record.attempts if a.path] == ["upload"] * 3
        net.file_server.fail_uploads = False
        missing = FileServer(net.file_server.info.url, net.file_server.info.pubkey_x25519)
        ref = await alice.upload_attachment(b"y")
        gone = type(ref)(**{**ref.__dict__, "url": missing.file_url(99), "file_id": 99})
        with pytest.raises(FileServerError, match="refused.*404") as info:
            await alice.download_attachment(gone)
        assert info.value.record is not None
        assert [a.status for a in info.value.record.attempts] == [404]


async def test_over_the_limit_fails_before_any_request() -> None:
    net = FakeNetwork()
    records: list = []
    async with make(net, records) as alice:
        with pytest.raises(FileServerError, match="over Session's limit"):
            await alice.upload_attachment(bytes(MAX_ATTACHMENT_BYTES + 1))
        assert records[-1].attempts == []
        ref = await alice.upload_attachment(bytes(MAX_ATTACHMENT_BYTES))
        assert ref.size == MAX_ATTACHMENT_BYTES


async def test_an_attachment_on_another_server_is_refused() -> None:
    net = FakeNetwork()
    async with make(net, []) as alice:
        ref = await alice.upload_attachment(b"z")
        elsewhere = type(ref)(**{**ref.__dict__, "url": "http://10.9.9.9:80/file/1"})
        with pytest.raises(FileServerError, match="not on the file server"):
            await alice.download_attachment(elsewhere)


async def test_no_file_server_known_is_a_clear_error() -> None:
    net = FakeNetwork()
    async with SessionClient(net.seed_url, transport=net) as alice:
        with pytest.raises(FileServerError, match="no file server known"):
            await alice.upload_attachment(b"z")


def test_file_urls() -> None:
    fs = FileServer("http://127.1.0.3:8080", "11" * 32)
    assert fs.file_url(42) == "http://127.1.0.3:8080/file/42"
    assert file_id_from_url(fs.file_url(42)) == 42
    assert fs.serves("http://127.1.0.3:8080/file/1") and not fs.serves("http://127.1.0.3:8081/file/1")
    with pytest.raises(FileServerError):
        file_id_from_url("http://127.1.0.3:8080/other/42")
    with pytest.raises(ValueError, match="64 hex"):
        FileServer("http://127.1.0.3:8080", "zz")
