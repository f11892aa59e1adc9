"""Following a log file as it grows (``testnet logs -f`` on the process backend; the docker and
swarm backends follow their containers' logs: :mod:`harness.backends.follow_container`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


class FollowedFile:
    """A log file read incrementally: complete lines only, reopened from its start when it is
    replaced (another inode) or truncated, silently empty while it does not exist."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: BinaryIO | None = None
        self._inode: int | None = None
        self._partial = b""

    def _reopen_if_changed(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return  # not created yet, or removed with the testnet: keep what is open
        if self._f is not None and st.st_ino == self._inode and st.st_size >= self._f.tell():
            return
        self.close()
        try:
            self._f = open(self.path, "rb")  # noqa: SIM115 - kept open across calls
        except FileNotFoundError:
            return
        self._inode = os.fstat(self._f.fileno()).st_ino

    def read_lines(self) -> list[str]:
        self._reopen_if_changed()
        if self._f is None:
            return []
        data = self._partial + self._f.read()
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in lines]

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
            self._partial = b""
