"""Client commands of the ``testnet`` CLI: accounts, sending and receiving Session messages.

    testnet account new [-o FILE] [--json]              a new account (Session ID + secret seed)
    testnet send [-n NET] --account FILE --to ID [--attach FILE]... TEXT [--json | --record]
    testnet recv [-n NET] --account FILE [--timeout S] [--save-attachments DIR] [--json]

``-n/--name`` (default ``default``, env ``SESSION_TESTNET_NAME``) picks the testnet whose seed the
client bootstraps from; ``--seed-url URL`` replaces it for a network not started by this harness.
Failures print ``error: …`` and exit 1 (see :mod:`harness.cliutil`).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from harness.cliutil import CliGroup, friendly_errors, json_option, name_option, require_testnet
from harness.cliutil import output_option as _output_option
from harness.state import StateDir

from . import cli_attachments as ca
from .account import Account
from .attachments import FileServer, FileServerError
from .client import SessionClient
from .config import ClientConfig
from .errors import Timeout
from .receiving import Received

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

SEND_JSON = ('{"hash", "from", "to", "timestamp", "destination", "attempts", "confirmations"}; '
             'with --attach also "attachments": [{"id", "url", "size", "digest", "file_name", '
             '"content_type"}]')
RECV_JSON = ('a list of {"from", "body", "hash", "timestamp"}, oldest first; a message with '
             'attachments also has "attachments": [{"id", "url", "size", "digest", "file_name", '
             '"content_type"}], each with "saved": PATH under --save-attachments')
ACCOUNT_JSON = '{"session_id", "seed"} (the account file\'s content; the seed is secret)'


def seed_url_for(name: str) -> str:
    """The seed URL of the testnet called ``name`` (from its state); a :class:`CliError` listing
    the testnets there are when there is none of that name."""
    require_testnet(name)
    return StateDir(name).load().seed_url


def _seed(name: str, seed_url: str | None) -> str:
    return seed_url or seed_url_for(name)


def _config(enc_type: str | None) -> ClientConfig | None:
    return ClientConfig(enc_type=enc_type) if enc_type else None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _short(session_id: str) -> str:
    return f"{session_id[:6]}…{session_id[-4:]}" if len(session_id) > 12 else session_id


def _client_options(fn: F) -> F:
    """``-n/--name``, ``--seed-url``, ``--account`` and ``--enc-type`` of send and recv."""
    fn = click.option("--enc-type", type=click.Choice(["aes-gcm", "xchacha20"]), default=None,
                      help="Onion layer cipher [default: aes-gcm].")(fn)
    fn = click.option("--account", "account_file", required=True,
                      type=click.Path(dir_okay=False),
                      help="Account file ({session_id, seed}; 'testnet account new -o FILE').")(fn)
    fn = click.option("--seed-url", default=None,
                      help="Seed URL of a network not started by this harness (replaces -n).")(fn)
    return name_option(fn)


def _file_server_options(fn: F) -> F:
    fn = click.option("--file-server-key", default=None, metavar="HEX",
                      help="X25519 public key of --file-server (hex).")(fn)
    fn = click.option("--file-server", "file_server_url", default=None, metavar="URL",
                      help="File server of a network not started by this harness "
                           "[default: the testnet's, from its state].")(fn)
    return fn


@click.group("account")
def account_group() -> None:
    """Session accounts (Ed25519 seed + Session ID)."""


@account_group.command("new")
@_output_option("Write the account to FILE (mode 0600; never overwrites).")
@json_option(ACCOUNT_JSON)
@friendly_errors
def account_new(output: str | None, as_json: bool) -> None:
    """Create a random account and print its Session ID (and, without -o, its secret seed)."""
    acct = Account.generate()
    if output:
        acct.save(output)
    if as_json:
        click.echo(json.dumps(acct.to_dict()))
    elif output:
        click.echo(acct.session_id)
        click.echo(f"account saved to {output} (keep it: its seed is the account's secret)",
                   err=True)
    else:
        click.echo(f"session_id {acct.session_id}\nseed       {acct.seed_hex}")


@click.command("send")
@_client_options
@click.option("--to", "to", required=True, help="Recipient Session ID (05…).")
@click.option("--attach", "attach", multiple=True, metavar="FILE",
              help="Attach FILE (repeatable): encrypted, uploaded to the file server through an "
                   "onion path, sent as an AttachmentPointer.")
@_file_server_options
@json_option(SEND_JSON)
@click.option("--record", is_flag=True, help="Print the whole operation record (JSON) instead: "
              "every attempt with its onion path and outcome.")
@click.argument("text")
@friendly_errors
def send_cmd(name: str, seed_url: str | None, account_file: str, enc_type: str | None, to: str,
             attach: tuple[str, ...], file_server_url: str | None, file_server_key: str | None,
             as_json: bool, record: bool, text: str) -> None:
    """Send TEXT as a Session 1-to-1 message through a 3-hop onion path (with --attach, the
    files first go to the file server, each through an onion path)."""
    if as_json and record:
        raise click.UsageError("--json and --record print different things: give one of them")
    acct = Account.load(account_file)
    seed = _seed(name, seed_url)
    files = ca.read_files(attach)
    server: FileServer | None = None
    if files:
        server = ca.file_server_for(name, file_server_url, file_server_key)

    async def go() -> Any:
        async with SessionClient(seed, acct, config=_config(enc_type), file_server=server) as c:
            refs = []
            for f in files:
                try:
                    refs.append(await c.upload_attachment(f.data, file_name=f.name,
                                                          content_type=f.content_type))
                except FileServerError as exc:
                    raise FileServerError(f"--attach {f.path}: {exc}") from None
            return await c.send(to, text, attachments=refs)

    rec = _run(go())
    if record:
        click.echo(rec.to_json())
    elif as_json:
        click.echo(json.dumps({"hash": rec.message_hash, "from": acct.session_id, "to": to,
                               "timestamp": rec.timestamp_ms, "destination": rec.destination,
                               "attempts": len(rec.attempts),
                               "confirmations": rec.confirmations,
                               **({"attachments": rec.details["attachments"]} if files else {})}))
    else:
        tries = len(rec.attempts)
        click.echo(f"sent {rec.message_hash} to {_short(to)}: stored with {rec.confirmations} "
                   f"confirmations after {tries} attempt{'s' if tries != 1 else ''}")
        for a in rec.details.get("attachments", []):
            click.echo(f"  attached {a['file_name']} ({a['size']} bytes) as {a['url']}")


@click.command("recv")
@_client_options
@click.option("--timeout", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Keep polling up to S seconds until at least one message arrives.")
@click.option("--save-attachments", "save_dir", default=None, metavar="DIR",
              help="Download, verify and decrypt every attachment into DIR (created if missing) "
                   "under its file name; an existing file is never overwritten: 'name (1).ext', "
                   "… is used instead.")
@_file_server_options
@json_option(RECV_JSON)
@friendly_errors
def recv_cmd(name: str, seed_url: str | None, account_file: str, enc_type: str | None,
             timeout: float, save_dir: str | None, file_server_url: str | None,
             file_server_key: str | None, as_json: bool) -> None:
    """Fetch the account's messages (one poll of its swarm, or until one arrives with
    --timeout) and print them, oldest first."""
    acct = Account.load(account_file)
    seed = _seed(name, seed_url)
    directory = ca.prepare_dir(save_dir) if save_dir else None
    server = ca.file_server_for(name, file_server_url, file_server_key) if directory else None
    saved: dict[tuple[str, int], str] = {}
    failed: list[str] = []

    async def go() -> list[Received]:
        async with SessionClient(seed, acct, config=_config(enc_type), file_server=server) as c:
            got = await c.receive()
            if not got and timeout > 0:
                try:
                    got = await c.wait_for(count=1, timeout=timeout)
                except Timeout:
                    pass
            if directory is not None:
                for m in got:
                    for i, ref in enumerate(m.attachments):
                        try:
                            data = await c.download_attachment(ref)
                        except FileServerError as exc:
                            failed.append(f"attachment {ref.file_name or ref.file_id} of message "
                                          f"{m.hash}: {exc}")
                            continue
                        saved[(m.hash, i)] = str(ca.save(directory, ref, data))
            return got

    msgs = _run(go())
    if as_json:
        out = []
        for m in msgs:
            d = m.to_json_dict()
            for i, a in enumerate(d.get("attachments", [])):
                if (m.hash, i) in saved:
                    a["saved"] = saved[(m.hash, i)]
            out.append(d)
        click.echo(json.dumps(out))
    else:
        if not msgs:
            click.echo("no messages" + (f" within {timeout:g} s" if timeout else ""))
        for m in msgs:
            when = datetime.datetime.fromtimestamp(m.timestamp_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
            click.echo(f"{when}  from {_short(m.sender)}  {m.body}")
            for i, ref in enumerate(m.attachments):
                where = f" saved as {saved[(m.hash, i)]}" if (m.hash, i) in saved else ""
                click.echo(f"  attachment {ref.file_name or ref.file_id} ({ref.size} bytes){where}")
    if failed:
        raise FileServerError("; ".join(failed))


COMMANDS = (account_group, send_cmd, recv_cmd)
#: what `testnet` (harness/cli.py) adds to its group
commands = list(COMMANDS)


def register(group: click.Group) -> None:
    """Add ``account``, ``send`` and ``recv`` to the ``testnet`` click group."""
    for cmd in COMMANDS:
        group.add_command(cmd)


@click.group(cls=CliGroup)
def main() -> None:
    """Session client commands (standalone entry point; `testnet` includes them too)."""


register(main)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = ["commands", "main", "register", "seed_url_for"]
