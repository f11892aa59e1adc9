"""Client commands of the ``testnet`` CLI (the lead wires them in with :func:`register`).

    testnet account new [--out FILE]                 prints {"session_id", "seed"}
    testnet send --name NET --account FILE --to ID TEXT
    testnet recv --name NET --account FILE [--timeout S] [--json]

``--seed-url URL`` can replace ``--name`` (a network not managed by this harness).  Errors are
reported as one line on stderr with exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from .account import Account
from .client import Received, SessionClient
from .errors import ClientError


def seed_url_for(name: str) -> str:
    """The seed URL of the testnet called ``name`` (from its state file)."""
    from harness import state

    try:
        load = getattr(state, "load_network", None)
        net = load(name) if load is not None else state.StateDir(name).load()
    except state.StateError as exc:
        raise click.ClickException(str(exc)) from None
    return net.seed_url


def _seed(name: str | None, seed_url: str | None) -> str:
    if seed_url:
        return seed_url
    if not name:
        raise click.UsageError("give the testnet with --name NET (or a seed with --seed-url URL)")
    return seed_url_for(name)


def _load_account(path: str) -> Account:
    try:
        return Account.load(path)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


_name_opt = click.option("--name", "name", default=None, help="testnet name (as given to 'testnet up')")
_seed_opt = click.option("--seed-url", default=None, help="seed URL instead of a testnet name")
_account_opt = click.option("--account", "account_file", required=True,
                            type=click.Path(dir_okay=False), help="account file ({session_id, seed})")
_enc_opt = click.option("--enc-type", type=click.Choice(["aes-gcm", "xchacha20"]), default=None,
                        help="onion layer cipher (default aes-gcm)")


@click.group("account")
def account_group() -> None:
    """Session accounts (Ed25519 seed + Session ID)."""


@account_group.command("new")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="also write the account to FILE (mode 0600; never overwrites)")
def account_new(out: str | None) -> None:
    """Create a random account and print {"session_id", "seed"}."""
    acct = Account.generate()
    if out:
        try:
            acct.save(out)
        except ClientError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(acct.to_dict()))


@click.command("send")
@_name_opt
@_seed_opt
@_account_opt
@click.option("--to", "to", required=True, help="recipient Session ID (05…)")
@_enc_opt
@click.option("--record", is_flag=True, help="print the full operation record")
@click.argument("text")
def send_cmd(name: str | None, seed_url: str | None, account_file: str, to: str,
             enc_type: str | None, record: bool, text: str) -> None:
    """Send TEXT as a Session 1-to-1 message; prints the stored message's hash as JSON."""
    acct = _load_account(account_file)
    seed = _seed(name, seed_url)

    async def go() -> Any:
        async with SessionClient(seed, acct) as c:
            return await c.send(to, text, enc_type=enc_type)

    rec = _run(go())
    if record:
        click.echo(rec.to_json())
        return
    click.echo(json.dumps({"hash": rec.message_hash, "from": acct.session_id, "to": to,
                           "timestamp": rec.timestamp_ms, "destination": rec.destination,
                           "attempts": len(rec.attempts), "confirmations": rec.confirmations}))


@click.command("recv")
@_name_opt
@_seed_opt
@_account_opt
@click.option("--timeout", type=float, default=0.0, show_default=True,
              help="keep polling up to S seconds until at least one message arrives")
@click.option("--json", "as_json", is_flag=True, help="JSON list (the default output is JSON too; "
              "the flag is accepted for scripts that pass it)")
@_enc_opt
def recv_cmd(name: str | None, seed_url: str | None, account_file: str, timeout: float,
             as_json: bool, enc_type: str | None) -> None:
    """Fetch the account's messages; prints a JSON list of {"from", "body", "hash", "timestamp"}."""
    acct = _load_account(account_file)
    seed = _seed(name, seed_url)

    async def go() -> list[Received]:
        async with SessionClient(seed, acct, **({"enc_type": enc_type} if enc_type else {})) as c:
            got = await c.receive()
            if not got and timeout > 0:
                try:
                    got = await c.wait_for(count=1, timeout=timeout)
                except ClientError as exc:
                    if not isinstance(exc, TimeoutError):
                        raise
            return got

    msgs = _run(go())
    click.echo(json.dumps([m.to_json_dict() for m in msgs], indent=None if as_json else 2))


COMMANDS = (account_group, send_cmd, recv_cmd)
#: what `testnet` (harness/cli.py) adds to its group
commands = list(COMMANDS)


def register(group: click.Group) -> None:
    """Add ``account``, ``send`` and ``recv`` to the ``testnet`` click group."""
    for cmd in COMMANDS:
        group.add_command(cmd)


@click.group()
def main() -> None:
    """Session client commands (standalone entry point; `testnet` includes them too)."""


register(main)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

