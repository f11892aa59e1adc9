"""The README's examples are executed as a user would run them, so they cannot drift.

Rules (what the test does with README.md, top to bottom):

- Every fenced ```sh block is run, in order, in one temporary working directory, with
  ``SESSION_TESTNET_HOME`` isolated and the process backend as the default
  (``SESSION_TESTNET_BACKEND=process``). ``testnet`` is this checkout's CLI
  (``python -m harness``, the interpreter running the test). Each line is one command, run by
  ``bash -c`` (so ``&&``, redirections and ``# comments`` work as in a shell) and must exit 0.
- Blocks under a heading in :data:`EXCLUDED` are not run, each for the reason given there
  (the test fails if such a heading disappears, so the rule cannot go stale). Blocks under a
  heading in :data:`DOCKER` need a Docker Engine: they run in the ``e2e`` variant only.
- Placeholder: ``05…`` in a command stands for the Session ID (``05`` + 64 hex digits) printed
  last by an earlier command. Any other ``…`` outside a comment fails the test: a README command
  must be runnable as written.
- A ``testnet logs`` command with ``-f``/``--follow`` runs until it has printed a line of every
  NODE it names, then gets Ctrl-C (SIGINT) and must exit 0.
- The ```json block shows the output of ``testnet up --json``: it must have the same keys as the
  real output of the README's ``testnet up --json`` (and its node entries the same keys).
- The ```python block runs as a script (in the same directory and environment) and must exit 0.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"

#: headings whose ```sh blocks are not run, and why
EXCLUDED = {
    "Set-up": "installs system packages and this package (the test runs inside that set-up)",
    "Test command": "runs this very suite",
}
#: headings whose ```sh blocks need a Docker Engine (run by the e2e variant)
DOCKER = {"On Docker"}

SESSION_ID = re.compile(r"\b05[0-9a-f]{64}\b")
PLACEHOLDER = "05…"
COMMAND_TIMEOUT = 240.0


@dataclass
class Block:
    heading: str
    lang: str
    text: str
    line: int  # 1-based line of the opening fence in README.md

    def commands(self) -> list[str]:
        return [c for c in (raw.strip() for raw in self.text.splitlines()) if c]


def parse_readme(text: str) -> list[Block]:
    blocks: list[Block] = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        elif line.startswith("```") and len(line) > 3:
            lang, start = line[3:].strip(), i
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(heading, lang, "\n".join(body), start + 1))
        i += 1
    return blocks


def command_part(command: str) -> str:
    """The command without its trailing ``  # comment``."""
    return re.split(r"\s+#\s", command, maxsplit=1)[0]


@dataclass
class Shell:
    """Runs README commands as a user would, in ``cwd`` with ``env``; remembers outputs."""

    cwd: Path
    env: dict[str, str]
    outputs: list[tuple[str, str]] = field(default_factory=list)

    def substitute(self, command: str, where: str) -> str:
        if PLACEHOLDER in command_part(command):
            ids = [m for _, out in self.outputs for m in SESSION_ID.findall(out)]
            assert ids, f"{where}: {command!r} uses {PLACEHOLDER} but no earlier command printed one"
            command = command.replace(PLACEHOLDER, ids[-1])
        assert "…" not in command_part(command), (
            f"{where}: {command!r} has a placeholder this test does not know; README commands "
            "must run as written")
        return command

    def run(self, command: str, where: str) -> str:
        command = self.substitute(command, where)
        argv = shlex.split(command_part(command))
        if argv[:2] == ["testnet", "logs"] and ({"-f", "--follow"} & set(argv)):
            return self._follow(command, argv, where)
        r = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, text=True,
                           capture_output=True, timeout=COMMAND_TIMEOUT)
        assert r.returncode == 0, (f"{where}: `{command}` exited {r.returncode}\n"
                                   f"stdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-3000:]}")
        self.outputs.append((command, r.stdout + r.stderr))
        return r.stdout

    def _follow(self, command: str, argv: list[str], where: str) -> str:
        nodes = [a for a in argv[2:] if not a.startswith("-")]
        p = subprocess.Popen(["bash", "-c", f"exec {command_part(command)}"], cwd=self.cwd,
                             env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout is not None
        fd = p.stdout.fileno()
        os.set_blocking(fd, False)
        out = b""
        deadline = time.monotonic() + 60
        try:
            while not (out and all(b"\n" + n.encode() + b" " in b"\n" + out for n in nodes)):
                assert p.poll() is None, f"{where}: `{command}` ended early (exit {p.returncode})"
                assert time.monotonic() < deadline, (
                    f"{where}: `{command}` printed no line of {nodes} within 60 s:\n"
                    f"{out[-2000:].decode(errors='replace')}")
                try:
                    out += os.read(fd, 65536)
                except BlockingIOError:
                    time.sleep(0.1)
        finally:
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=20)
        assert p.returncode == 0, f"{where}: `{command}` exited {p.returncode} on Ctrl-C:\n{err.decode(errors='replace')}"
        text = out.decode(errors="replace")
        self.outputs.append((command, text))
        return text


def make_shell(tmp_path: Path, backend: str) -> Shell:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    testnet = bin_dir / "testnet"
    testnet.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m harness "$@"\n')
    testnet.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    root = str(README.parent)
    env = {k: v for k, v in os.environ.items() if k != "SESSION_TESTNET_NAME"}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "SESSION_TESTNET_HOME": str(tmp_path / "home"),
        "SESSION_TESTNET_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")])),
    })
    return Shell(work, env)


def tear_down(shell: Shell) -> None:
    """Whatever the README left running in the isolated home goes (even after a failure)."""
    for args in (["down", "--all"], ["clean"]):
        subprocess.run([sys.executable, "-m", "harness", *args], cwd=shell.cwd, env=shell.env,
                       capture_output=True, timeout=180)
    left = subprocess.run([sys.executable, "-m", "harness", "status", "--json"], cwd=shell.cwd,
                          env=shell.env, capture_output=True, text=True, timeout=60)
    assert json.loads(left.stdout or "[]") == [], f"testnets left running: {left.stdout}"


def readme_blocks() -> list[Block]:
    return parse_readme(README.read_text())


def test_exclusion_rules_match_the_readme():
    blocks = readme_blocks()
    headings = {b.heading for b in blocks if b.lang == "sh"}
    for heading in (*EXCLUDED, *DOCKER):
        assert heading in headings, f"README has no ```sh block under {heading!r}: update the rules"
    assert [b.lang for b in blocks if b.lang == "json"] == ["json"]
    assert [b.lang for b in blocks if b.lang == "python"] == ["python"]
    assert {b.lang for b in blocks} <= {"sh", "json", "python"}, "a block this test does not run"


@pytest.mark.timeout(900)  # the whole README, one command after the other: ~5.5 min on 2 loaded cores
def test_readme_runs_as_written(tmp_path):
    """Every ```sh block (process backend), the ```json shape and the ```python block."""
    shell = make_shell(tmp_path, "process")
    blocks = readme_blocks()
    up_json: dict | None = None
    try:
        for block in blocks:
            where = f"README.md:{block.line} ({block.heading})"
            if block.lang == "sh" and block.heading not in EXCLUDED and block.heading not in DOCKER:
                for command in block.commands():
                    out = shell.run(command, where)
                    argv = shlex.split(command_part(command))
                    if argv[:2] == ["testnet", "up"] and "--json" in argv and up_json is None:
                        up_json = json.loads(out)
            elif block.lang == "python":
                script = tmp_path / "readme_example.py"
                script.write_text(block.text)
                r = subprocess.run([sys.executable, str(script)], cwd=shell.cwd, env=shell.env,
                                   capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
                assert r.returncode == 0, f"{where}: the Python example failed:\n{r.stderr[-3000:]}"
    finally:
        tear_down(shell)

    assert up_json is not None, "the README shows no `testnet up --json` to compare its JSON with"
    (shown,) = [json.loads(b.text) for b in blocks if b.lang == "json"]
    assert set(shown) == set(up_json), "README's `up --json` keys differ from the real output"
    assert shown["nodes"] and up_json["nodes"]
    assert {k for n in shown["nodes"] for k in n} == {k for n in up_json["nodes"] for k in n}


@pytest.mark.e2e
def test_readme_docker_blocks_run_as_written(tmp_path):
    shell = make_shell(tmp_path, "docker")
    try:
        for block in readme_blocks():
            if block.lang == "sh" and block.heading in DOCKER:
                for command in block.commands():
                    shell.run(command, f"README.md:{block.line} ({block.heading})")
    finally:
        tear_down(shell)
