"""``testnet client-adapter``: adapter zero, the built-in client speaking the client adapter
protocol (docs/client-adapter.md) on stdin/stdout.

    testnet suite run delivery --client "testnet client-adapter"
    pytest --pyargs harness.suites --testnet-client "testnet client-adapter --poll all"
"""

from __future__ import annotations

import sys
from typing import Any

import click

from harness.adapter.builtin import BuiltinHandler
from harness.adapter.serve import serve
from harness.cliutil import friendly_errors


@click.command("client-adapter")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds one onion request may take [default: the client's, 10].")
@click.option("--enc-type", type=click.Choice(["aes-gcm", "xchacha20"]), default=None,
              help="Onion layer cipher [default: aes-gcm].")
@click.option("--poll", type=click.Choice(["one", "all"]), default=None,
              help="Poll one member of the own swarm per read (as session-desktop) or all "
                   "[default: one].")
@friendly_errors
def client_adapter(request_timeout: float | None, enc_type: str | None, poll: str | None) -> None:
    """Speak the client adapter protocol with the built-in client (adapter zero).

    Reads JSON requests on stdin, one per line, and answers each on stdout (see
    docs/client-adapter.md); the seed URL, the node list and the account seed arrive on stdin,
    never on the command line. Diagnostics go to stderr. Not run by hand: the harness starts it
    (pytest --testnet-client CMD, testnet suite run --client CMD).
    """
    settings: dict[str, Any] = {}
    if request_timeout is not None:
        settings["request_timeout"] = request_timeout
    if enc_type is not None:
        settings["enc_type"] = enc_type
    if poll is not None:
        settings["poll_mode"] = poll
    handler = BuiltinHandler(**settings)
    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # anything else printed must not corrupt the protocol stream
    try:
        serve(handler, sys.stdin, protocol_out)
    finally:
        sys.stdout = protocol_out


#: what `testnet` (harness/cli.py) adds to its group
commands = [client_adapter]

__all__ = ["client_adapter", "commands"]
