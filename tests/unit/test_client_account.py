"""Account files: round trip, permissions, clear errors on bad files; the `account new` CLI."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner

from harness.client.account import Account
from harness.client.cli import main as cli_main
from harness.client.errors import AccountError
from nodes.protocol.keys import Identity

pytestmark = pytest.mark.unit

SEED = "7d446468c186d6fb3c83365ab77a37b1f9fa3e59eb9788a40ae2e9560f196f30"


def test_round_trip_keeps_identity_and_writes_0600(tmp_path):
    acct = Account.from_seed_hex(SEED)
    assert acct.session_id == Identity.from_seed_hex(SEED).session_id
    assert acct.session_id.startswith("05") and len(acct.session_id) == 66
    path = acct.save(tmp_path / "alice.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data == {"session_id": acct.session_id, "seed": SEED}
    loaded = Account.load(path)
    assert loaded.session_id == acct.session_id and loaded.seed_hex == SEED
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    p = tmp_path / "a.json"
    Account.generate().save(p)
    other = Account.generate()
    with pytest.raises(AccountError, match="already exists"):
        other.save(p)
    other.save(p, overwrite=True)
    assert Account.load(p).session_id == other.session_id
    with pytest.raises(AccountError, match="does not exist"):
        other.save(tmp_path / "nodir" / "a.json")


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    ("{not json", "is not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"session_id": "05aa"}', "missing key 'seed'"),
    ('{"seed": "abc"}', "64 hex characters"),
    ('{"seed": "' + "zz" * 32 + '"}', "not hex"),
    ('{"seed": "' + SEED + '", "session_id": "05' + "00" * 32 + '"}', "does not belong to this seed"),
    ('{"seed": "' + SEED + '", "session_id": "05zz"}', "'session_id' is invalid"),
])
def test_bad_files_give_clear_errors(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(AccountError, match=message) as ei:
        Account.load(p)
    assert str(p) in str(ei.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AccountError, match="testnet account new"):
        Account.load(tmp_path / "nope.json")
    with pytest.raises(AccountError, match="is a directory"):
        Account.load(tmp_path)


def test_seed_only_file_is_accepted(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"seed": SEED}))
    assert Account.load(p).session_id == Account.from_seed_hex(SEED).session_id


def test_cli_account_new_prints_and_writes(tmp_path):
    runner = CliRunner()
    out = tmp_path / "n.json"
    res = runner.invoke(cli_main, ["account", "new", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.output)
    assert set(printed) == {"session_id", "seed"}
    assert Account.load(out).session_id == printed["session_id"]
    assert Account.from_seed_hex(printed["seed"]).session_id == printed["session_id"]
    again = runner.invoke(cli_main, ["account", "new", "-o", str(out), "--json"])
    assert again.exit_code == 1 and "already exists" in again.output


def test_cli_send_with_bad_account_file_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    res = CliRunner().invoke(cli_main, ["send", "--seed-url", "http://127.0.0.1:9", "--account", str(bad),
                                        "--to", "05" + "11" * 32, "hi"])
    assert res.exit_code == 1
    assert "missing key 'seed'" in res.output
    res = CliRunner().invoke(cli_main, ["recv", "--account", str(bad)])
    assert res.exit_code != 0
