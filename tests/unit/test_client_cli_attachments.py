"""harness.client.cli_attachments: reading --attach files, saving --save-attachments without
overwriting, the file server from a testnet's state entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.client.cli_attachments import (
    file_server_for,
    file_server_from,
    prepare_dir,
    read_files,
    safe_name,
    save,
)
from harness.cliutil import CliError
from nodes.protocol.message import AttachmentRef

pytestmark = pytest.mark.unit


def ref(name: str | None, file_id: int = 7) -> AttachmentRef:
    return AttachmentRef(file_id=file_id, url=f"http://127.0.0.1:1/file/{file_id}", key=bytes(64),
                         digest=bytes(32), size=3, file_name=name)


@pytest.mark.parametrize(("name", "expected"), [
    ("photo.jpg", "photo.jpg"), ("../../etc/passwd", "passwd"), ("a/b/c.txt", "c.txt"),
    ("C:\\\\Users\\\\x\\\\evil.exe", "evil.exe"), ("..", "attachment-7"), ("", "attachment-7"),
    (None, "attachment-7"), ("/", "attachment-7"),
])
def test_safe_name_keeps_the_last_component_only(name: str | None, expected: str) -> None:
    assert safe_name(ref(name)) == expected


def test_save_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"mine")
    first = save(tmp_path, ref("photo.jpg"), b"one")
    second = save(tmp_path, ref("photo.jpg"), b"two")
    assert (first.name, second.name) == ("photo (1).jpg", "photo (2).jpg")
    assert (tmp_path / "photo.jpg").read_bytes() == b"mine"
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")
    assert save(tmp_path, ref("../escape.txt"), b"x").parent == tmp_path


def test_prepare_dir(tmp_path: Path) -> None:
    assert prepare_dir(str(tmp_path / "new" / "dir")).is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CliError, match="not a folder"):
        prepare_dir(str(tmp_path / "file"))


def test_read_files(tmp_path: Path) -> None:
    p = tmp_path / "pic.png"
    p.write_bytes(b"\x89PNG")
    [f] = read_files((str(p),))
    assert (f.name, f.data, f.content_type) == ("pic.png", b"\x89PNG", "image/png")
    with pytest.raises(CliError, match="no such file"):
        read_files((str(tmp_path / "missing"),))
    with pytest.raises(CliError, match="no such file"):
        read_files((str(tmp_path),))


def test_file_server_entry() -> None:
    fs = file_server_from({"url": "http://127.1.0.3:8080", "pubkey_x25519": "ab" * 32}, "t")
    assert fs.file_url(1) == "http://127.1.0.3:8080/file/1"
    with pytest.raises(CliError, match="has no file server"):
        file_server_from(None, "testnet 'x'")
    with pytest.raises(CliError, match="go together"):
        file_server_for("x", "http://127.0.0.1:1", None)
    assert file_server_for("x", "http://127.0.0.1:1", "cd" * 32).url == "http://127.0.0.1:1"
