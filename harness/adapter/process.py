"""An adapter subprocess: spawn (no shell, own process group), one request at a time with a time
limit, stderr kept as a tail for error messages, and a kill of the whole process group that
always happens (close, a broken answer, a timeout, interpreter exit)."""

from __future__ import annotations

import atexit
import collections
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import IO, Any

from harness.adapter.errors import (
    AdapterDied,
    AdapterError,
    AdapterProtocolError,
    AdapterStartError,
    AdapterTimeout,
)
from harness.adapter.protocol import MAX_LINE_BYTES, ProtocolViolation, check_answer, decode_line, encode

#: stderr lines kept for error messages
STDERR_TAIL = 20
#: seconds between SIGTERM and SIGKILL of the process group
KILL_GRACE = 2.0

_LIVE: weakref.WeakSet[AdapterProcess] = weakref.WeakSet()


def split_command(command: str | Sequence[str]) -> list[str]:
    """The argv of an adapter command (a string is split like a shell would, without one)."""
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise AdapterStartError(command, f"cannot split the command: {e}") from None
    else:
        argv = [str(a) for a in command]
    if not argv:
        raise AdapterStartError(str(command), "the command is empty")
    return argv


class AdapterProcess:
    """One running adapter. ``request(obj, timeout)`` sends one request and returns its validated
    answer object; any failure raises an :class:`AdapterError` (the process is then killed)."""

    def __init__(self, command: str | Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.argv = split_command(command)
        self.command = command if isinstance(command, str) else shlex.join(self.argv)
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._next_id = 0
        self._dead_reason: str | None = None
        self._lock = threading.Lock()
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - the command under test, no shell
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
        except OSError as e:
            raise AdapterStartError(self.command, f"cannot run {self.argv[0]!r}: {e}") from None
        _LIVE.add(self)
        self._stderr_thread = self._reader(self._read_stderr, "stderr")
        self._stdout_thread = self._reader(self._read_stdout, "stdout")

    def _reader(self, target: Any, what: str) -> threading.Thread:
        t = threading.Thread(target=target, name=f"adapter-{self.proc.pid}-{what}", daemon=True)
        t.start()
        return t

    def _read_stdout(self) -> None:
        out = self.proc.stdout
        assert out is not None
        try:
            while True:
                line = out.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                self._lines.put(line)
        except (OSError, ValueError):  # closed under us by kill()
            pass
        self._lines.put(None)

    def _read_stderr(self) -> None:
        err = self.proc.stderr
        assert err is not None
        try:
            for line in iter(err.readline, b""):
                self._tail.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        except (OSError, ValueError):
            pass

    # -- state ------------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, settle: float = 0.0) -> list[str]:
        """The last stderr lines; with ``settle``, first wait up to that long for the stderr
        reader to reach the end (after the process died)."""
        if settle > 0:
            self._stderr_thread.join(settle)
        return list(self._tail)

    def error(self, cls: type[AdapterError], what: str, *, settle: float = 0.0) -> AdapterError:
        return cls(self.command, what, self.stderr_tail(settle))

    # -- requests ---------------------------------------------------------------------------------
    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``payload`` (an id is added) and wait up to ``timeout`` s for its answer."""
        with self._lock:
            op = str(payload.get("op"))
            if self._dead_reason is not None:
                raise self.error(AdapterDied, f"cannot send {op}: {self._dead_reason}")
            rid = self._next_id
            self._next_id += 1
            self._write({"id": rid, **payload}, op)
            line = self._read(rid, op, timeout)
            try:
                return check_answer(decode_line(line), rid, op)
            except ProtocolViolation as e:
                self.kill(f"it broke the protocol ({e})")
                raise self.error(AdapterProtocolError, str(e), settle=0.5) from None

    def _write(self, obj: dict[str, Any], op: str) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(encode(obj).encode("utf-8"))
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            status = self._wait_status(1.0)
            self.kill(f"its stdin was closed ({status})")
            raise self.error(AdapterDied, f"cannot send {op}: the adapter closed its stdin "
                             f"({status}; {type(e).__name__})", settle=1.0) from None

    def _read(self, rid: int, op: str, timeout: float) -> bytes:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill(f"it did not answer {op} within {timeout:g} s")
            raise self.error(AdapterTimeout, f"no answer to {op} (request {rid}) within "
                             f"{timeout:g} s; the adapter was killed") from None
        if line is None:
            status = self._wait_status(1.0)
            self.kill(f"it closed its stdout ({status})")
            raise self.error(AdapterDied, f"the adapter closed its stdout before answering {op} "
                             f"(request {rid}): {status}", settle=1.0)
        if len(line) > MAX_LINE_BYTES:
            self.kill("it wrote an over-long line")
            raise self.error(AdapterProtocolError, f"answer to {op} (request {rid}) is longer "
                             f"than {MAX_LINE_BYTES} bytes")
        return line

    def _wait_status(self, timeout: float) -> str:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    # -- ending -----------------------------------------------------------------------------------
    def close_stdin(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.close()
            except OSError:
                pass

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the adapter to exit by itself; True if it did."""
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self, reason: str = "it was closed") -> None:
        """Terminate the adapter's whole process group (SIGTERM, SIGKILL after a grace period)
        and close the pipes. Idempotent; later requests fail saying ``reason``."""
        if self._dead_reason is None:
            self._dead_reason = f"the adapter was stopped: {reason}"
        self.close_stdin()
        _signal_group(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        # children of the adapter may outlive it in its group: always finish the group off
        _signal_group(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
            pass
        # close the pipes once their readers reached the end (closing a pipe another thread is
        # reading would wait for that read: a grandchild that left the group may hold it open)
        for thread, stream in ((self._stdout_thread, self.proc.stdout),
                               (self._stderr_thread, self.proc.stderr)):
            thread.join(0.5)
            if not thread.is_alive():
                _close_quietly(stream)
        _LIVE.discard(self)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        try:
            stream.close()
        except OSError:
            pass


@atexit.register
def _kill_leftovers() -> None:
    """No adapter outlives the harness process (a test that crashed before closing one)."""
    for p in list(_LIVE):
        try:
            p.kill("the harness exited")
        except Exception:  # noqa: S110 - best effort at exit
            pass


__all__ = ["KILL_GRACE", "STDERR_TAIL", "AdapterError", "AdapterProcess", "split_command"]
