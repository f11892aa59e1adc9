"""Errors of a client adapter gone wrong (not of the network): each names the adapter command and
ends with its last stderr lines, so a broken adapter is diagnosed from the test report alone."""

from __future__ import annotations

from collections.abc import Sequence

from harness.client.errors import ClientError


def describe(command: str, what: str, stderr_tail: Sequence[str]) -> str:
    """``client adapter 'CMD': WHAT`` plus the adapter's last stderr lines."""
    text = f"client adapter {command!r}: {what}"
    if stderr_tail:
        text += "\nlast stderr lines of the adapter:\n" + "\n".join(f"    {s}" for s in stderr_tail)
    else:
        text += "\n(the adapter wrote nothing to stderr)"
    return text


class AdapterError(ClientError):
    """A client adapter failed as a program (could not start, broke the protocol, died, hung).
    ``command`` is the adapter command, ``stderr_tail`` its last stderr lines."""

    def __init__(self, command: str, what: str, stderr_tail: Sequence[str] = ()) -> None:
        super().__init__(describe(command, what, stderr_tail))
        self.command = command
        self.what = what
        self.stderr_tail = list(stderr_tail)


class AdapterStartError(AdapterError):
    """The adapter command could not be run, or refused ``start`` / ``account_new``."""


class AdapterProtocolError(AdapterError):
    """The adapter wrote something that is not a valid answer (not JSON, wrong id, bad field)."""


class AdapterDied(AdapterError):
    """The adapter exited (or closed its stdout) before answering."""


class AdapterTimeout(AdapterError, TimeoutError):
    """The adapter did not answer within the operation's time limit (it was then killed)."""


__all__ = ["AdapterDied", "AdapterError", "AdapterProtocolError", "AdapterStartError",
           "AdapterTimeout", "describe"]
