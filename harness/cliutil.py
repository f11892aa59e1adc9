"""What every `testnet` command shares: one error style, exit codes and the common options.

The convention (every command follows it):

- a command acting on a testnet takes ``-n/--name`` (default ``default``, env
  ``SESSION_TESTNET_NAME``) — :func:`name_option`; an unknown name is an error that lists the
  testnets there are — :func:`attach`;
- "write output to FILE" is ``-o/--output FILE`` — :func:`output_option`;
- a command that prints data has ``--json`` with one documented shape — :func:`json_option`;
- failures print ``error: <what failed and what to do>`` on stderr and exit 1; usage errors
  print the usage and ``error: …`` and exit 2; Ctrl-C exits 130 — :class:`CliGroup`,
  :class:`CliError`, :func:`friendly_errors`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from harness.backends.base import BackendError
from harness.client.errors import ClientError
from harness.network import NotReadyError, Testnet
from harness.rpc import RpcError
from harness.state import StateDir, StateError, list_networks
from harness.topology import TopologyError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_NAME = "default"
ENV_NAME = "SESSION_TESTNET_NAME"
#: exit status of a failure (a usage error is click's 2)
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


class CliError(click.ClickException):
    """A failure the user can act on: printed as ``error: <message>``, exit status 1."""

    exit_code = EXIT_FAILURE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _show_usage_error(e: click.UsageError) -> None:
    ctx = e.ctx
    if ctx is not None:
        hint = ""
        if ctx.command.get_help_option(ctx) is not None:
            hint = f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.\n"
        click.echo(f"{ctx.get_usage()}\n{hint}", err=True)
    click.echo(f"error: {e.format_message()}", err=True)


class CliGroup(click.Group):
    """A click group whose every failure looks the same: ``error: …`` on stderr, exit 1 for a
    failure (any :class:`click.ClickException`, including other modules' own subclasses), 2 for a
    usage error, 130 for Ctrl-C — instead of click's ``Error: …``."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            _show_usage_error(e)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:  # Ctrl-C (KeyboardInterrupt) or an aborted prompt
            sys.exit(EXIT_INTERRUPTED)
        # non-standalone main returns the exit code of click.exceptions.Exit (e.g. --help: 0)
        sys.exit(rv if isinstance(rv, int) else 0)


#: the harness's typed errors that mean "this failed; here is what to do" (never a traceback)
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    BackendError, NotReadyError, StateError, TopologyError, RpcError, ClientError, ValueError,
    TimeoutError,
)


def friendly_errors(fn: F) -> F:
    """Turn the harness's typed errors into one clear :class:`CliError` (exit status 1); a
    failed ``up`` also says where the logs of every node were saved."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EXPECTED_ERRORS as e:
            message = str(e)
            artifacts = getattr(e, "artifacts", None)
            if artifacts:
                message += f"\nlogs of every node were saved to {artifacts}"
            raise CliError(message) from None

    return wrapper  # type: ignore[return-value]


def name_option(fn: F) -> F:
    """``-n/--name NAME``: the testnet to act on (default ``default``, env SESSION_TESTNET_NAME)."""
    return click.option("--name", "-n", default=DEFAULT_NAME, show_default=True, envvar=ENV_NAME,
                        help=f"Testnet name (env {ENV_NAME}).")(fn)


def output_option(help: str = "Also write the output to FILE.") -> Callable[[F], F]:
    """``-o/--output FILE``: the one spelling of "write output to FILE"."""
    return click.option("--output", "-o", "output", type=click.Path(dir_okay=False),
                        default=None, help=help)


def json_option(shape: str) -> Callable[[F], F]:
    """``--json``: print ``shape`` (documented in --help) instead of the human-readable text."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print JSON: {shape}.")


def emit_result(result: Any, *, as_json: bool, output: str | None,
                lines: Callable[[], Iterable[str]]) -> None:
    """Print a command's result: its JSON (``--json``) or its readable ``lines()``; with
    ``-o/--output FILE`` the JSON is also written to FILE, whichever is printed."""
    text = json.dumps(result, indent=2)
    if output:
        Path(output).write_text(text + "\n")
    if as_json:
        click.echo(text)
        return
    for line in lines():
        click.echo(line)


def unknown_testnet(name: str) -> CliError:
    """The error for a testnet name with no state: lists the testnets there are."""
    running = list_networks()
    have = f"testnets here: {', '.join(running)}" if running else "no testnet is running"
    return CliError(f"no testnet named {name!r} ({have}); start it with 'testnet up -n {name}' "
                    "or pick one with -n NAME")


def require_testnet(name: str) -> None:
    """Raise :func:`unknown_testnet` unless a testnet called ``name`` exists."""
    if not StateDir(name).exists():
        raise unknown_testnet(name)


def attach(name: str) -> Testnet:
    """The running testnet ``name``, or a :class:`CliError` listing the testnets there are."""
    require_testnet(name)
    try:
        return Testnet.attach(name)
    except StateError as e:
        raise CliError(str(e)) from None
