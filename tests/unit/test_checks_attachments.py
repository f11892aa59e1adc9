"""attachment_privacy and privacy() over synthetic histories with onion requests to a server."""

from __future__ import annotations

from typing import Any

import pytest

from harness.checks import History, Verdict, attachment_privacy, privacy
from harness.checks.synth import T0, directory, hop, onion_obs
from harness.client.records import AttachmentRecord, AttemptRecord

pytestmark = pytest.mark.unit

A = "05" + "aa" * 32
CLIENT = "10.0.0.9"
FS = "http://127.1.0.3:8080"


def fs_obs(seq: int, ts: float, *, channel: str = "onion", remote: str = "127.1.5.2",
           file_id: int | None = 42, method: str = "POST", endpoint: str = "/file") -> dict[str, Any]:
    return {"seq": seq, "ts": ts, "remote_addr": remote, "channel": channel, "method": method,
            "endpoint": endpoint, "file_id": file_id, "size": 600, "status": 200}


def history(*, exit_remote: str = "127.1.3.2", fs: dict[str, Any] | None = None,
            exit_observed: bool = True) -> History:
    nodes = directory()
    h = History(nodes=nodes, client_addresses=[CLIENT])
    path = ["sn01", "sn03", "sn05"]
    a = AttemptRecord(n=1, method="upload", path=[hop(nodes, p) for p in path],
                      destination={"url": FS, "endpoint": "POST /file"}, enc_type="aes-gcm",
                      started_at=T0, elapsed_ms=80, http_status=200, status=200, ok=True)
    h.records.append(AttachmentRecord(op_id="upload-1", kind="upload", account=A, started_at=T0,
                                      ended_at=T0 + 0.1, outcome="ok", attempts=[a],
                                      server_url=FS, file_id=42))
    h.observations["sn01"] = [onion_obs(1, T0 + 0.01, hop_="relay", next_hop=nodes["sn03"]["ed25519"],
                                        remote=CLIENT)]
    h.observations["sn03"] = [onion_obs(1, T0 + 0.02, hop_="relay", next_hop=nodes["sn05"]["ed25519"],
                                        remote="127.1.1.2")]
    if exit_observed:
        h.observations["sn05"] = [{**onion_obs(1, T0 + 0.03, hop_="relay", remote=exit_remote),
                                   "server": FS + "/oxen/v4/lsrpc"}]
    h.observations["fileserver"] = [fs if fs is not None else fs_obs(1, T0 + 0.04)]
    return h


def test_clean_upload_passes_both_checks() -> None:
    h = history()
    r = attachment_privacy(h)
    assert r.verdict is Verdict.OK, r
    assert (r.evidence["files"], r.evidence["relayed"]) == (1, 1)
    p = privacy(h)
    assert p.verdict is Verdict.OK, p  # the exit's forward is the evidence at the path's end


def test_direct_upload_fails() -> None:
    r = attachment_privacy(history(fs=fs_obs(1, T0 + 0.04, channel="http", remote=CLIENT)))
    assert r.verdict is Verdict.FAILED
    assert any("asked directly from 10.0.0.9" in v for v in r.evidence["violations"])


def test_file_server_seeing_the_client_address_fails() -> None:
    r = attachment_privacy(history(fs=fs_obs(1, T0 + 0.04, remote=CLIENT)))
    assert r.verdict is Verdict.FAILED
    assert any("came from the client address" in v for v in r.evidence["violations"])


def test_exit_that_saw_the_client_fails() -> None:
    r = attachment_privacy(history(exit_remote=CLIENT))
    assert r.verdict is Verdict.FAILED
    assert any("sn05" in v and "who uploads" in v for v in r.evidence["violations"])


def test_a_file_request_no_exit_relayed_fails() -> None:
    r = attachment_privacy(history(exit_observed=False))
    assert r.verdict is Verdict.FAILED
    assert any("did not come through an exit node" in v for v in r.evidence["violations"])
    assert privacy(history(exit_observed=False)).verdict is Verdict.UNKNOWN  # no exit evidence


def test_nothing_observed_is_unknown() -> None:
    h = history()
    h.observations["fileserver"] = [fs_obs(1, T0, file_id=None, endpoint="/oxen/v4/lsrpc")]
    assert attachment_privacy(h).verdict is Verdict.UNKNOWN
