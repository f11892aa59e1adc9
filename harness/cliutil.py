"""What every `testnet` command shares: error reporting and common options."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from harness.backends.base import BackendError
from harness.network import NotReadyError
from harness.rpc import RpcError
from harness.state import StateError
from harness.topology import TopologyError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_NAME = "default"


def friendly_errors(fn: F) -> F:
    """Turn the harness's typed errors into one clear message and exit status 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BackendError, NotReadyError, StateError, TopologyError, RpcError, ValueError,
                TimeoutError) as e:
            click.echo(f"error: {e}", err=True)
            artifacts = getattr(e, "artifacts", None)
            if artifacts:
                click.echo(f"logs of every node were saved to {artifacts}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def name_option(fn: F) -> F:
    return click.option("--name", "-n", default=DEFAULT_NAME, show_default=True,
                        envvar="SESSION_TESTNET_NAME", help="Testnet name.")(fn)
