"""`testnet send --attach` / `testnet recv --save-attachments` as subprocesses against a running
testnet and its file server: identical bytes through onion paths, no overwrite, clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.network import Testnet

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker")]


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def accounts(tmp_path: Path) -> tuple[Path, Path, str]:
    alice_f, bob_f = tmp_path / "alice.json", tmp_path / "bob.json"
    ids = []
    for f in (alice_f, bob_f):
        r = cli("account", "new", "-o", str(f), "--json")
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(r.stdout)["session_id"])
    return alice_f, bob_f, ids[1]


def test_send_attach_recv_save_attachments_gives_identical_bytes(testnet: Testnet,
                                                                tmp_path: Path) -> None:
    alice_f, bob_f, bob = accounts(tmp_path)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(hashlib.sha256(b"photo").digest() * 9000)  # 288 000 bytes
    note = tmp_path / "note.txt"
    note.write_text("a small note\n")
    r = cli("send", "-n", testnet.name, "--account", str(alice_f), "--to", bob,
            "--attach", str(photo), "--attach", str(note), "two files", "--json")
    assert r.returncode == 0, r.stderr
    sent = json.loads(r.stdout)
    assert [(a["file_name"], a["size"]) for a in sent["attachments"]] == [
        ("photo.jpg", photo.stat().st_size), ("note.txt", note.stat().st_size)]

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "photo.jpg").write_bytes(b"already here")
    r = cli("recv", "-n", testnet.name, "--account", str(bob_f), "--timeout", "30",
            "--save-attachments", str(out), "--json")
    assert r.returncode == 0, r.stderr
    [msg] = json.loads(r.stdout)
    assert msg["body"] == "two files" and msg["hash"] == sent["hash"]
    saved = [Path(a["saved"]) for a in msg["attachments"]]
    assert [p.name for p in saved] == ["photo (1).jpg", "note.txt"]
    assert saved[0].read_bytes() == photo.read_bytes()
    assert saved[1].read_bytes() == note.read_bytes()
    assert (out / "photo.jpg").read_bytes() == b"already here"  # never overwritten
    assert [a["digest"] for a in msg["attachments"]] == [a["digest"] for a in sent["attachments"]]


def test_attach_errors_are_clear(testnet: Testnet, tmp_path: Path) -> None:
    alice_f, _bob_f, bob = accounts(tmp_path)
    r = cli("send", "-n", testnet.name, "--account", str(alice_f), "--to", bob,
            "--attach", str(tmp_path / "missing.jpg"), "x")
    assert r.returncode == 1 and "missing.jpg: no such file" in r.stderr
    f = tmp_path / "file"
    f.write_text("x")
    r = cli("recv", "-n", testnet.name, "--account", str(alice_f), "--save-attachments", str(f))
    assert r.returncode == 1 and "is not a folder" in r.stderr
