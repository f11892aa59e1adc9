"""What ``testnet send --attach FILE`` and ``testnet recv --save-attachments DIR`` need: the
testnet's file server, reading files to attach, and saving received attachments.

Saving never overwrites: an attachment is saved under its file name (its last path component;
``attachment-<id>`` when it has none or only dots), and when that name is taken in DIR, under
``stem (1).ext``, ``stem (2).ext``, … — the first free one (files are created exclusively, so a
file appearing meanwhile is not overwritten either).
"""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from harness.cliutil import CliError, require_testnet
from harness.state import StateDir
from nodes.protocol.attachment import MAX_ATTACHMENT_BYTES
from nodes.protocol.message import AttachmentRef

from .attachments import FileServer

#: attempts at a free name before giving up (a folder with that many copies is a mistake)
MAX_NAME_TRIES = 1000


@dataclass(frozen=True)
class FileToAttach:
    path: str
    name: str
    data: bytes
    content_type: str


def file_server_from(info: Any, where: str) -> FileServer:
    """A :class:`FileServer` from a state's file server record or ``up --json``'s ``fileserver``
    object (``{"url", "pubkey_x25519", …}``)."""
    if hasattr(info, "fileserver_dict"):
        info = info.fileserver_dict()
    if not isinstance(info, dict) or not info.get("url") or not info.get("pubkey_x25519"):
        raise CliError(f"{where} has no file server (started with 'fileserver': false, or by a "
                       "version without one): give --file-server URL --file-server-key HEX")
    try:
        return FileServer(str(info["url"]), str(info["pubkey_x25519"]))
    except ValueError as exc:
        raise CliError(f"{where}: bad file server entry: {exc}") from None


def file_server_for(name: str, url: str | None, key: str | None) -> FileServer:
    """``--file-server URL --file-server-key HEX`` when given, else the testnet's from its state."""
    if url or key:
        if not (url and key):
            raise CliError("--file-server and --file-server-key go together (the server's URL and "
                           "its X25519 public key, hex)")
        try:
            return FileServer(url, key)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    require_testnet(name)
    state = StateDir(name).load()
    return file_server_from(getattr(state, "fileserver", None), f"testnet {name!r}")


def read_files(paths: tuple[str, ...]) -> list[FileToAttach]:
    """Read every ``--attach`` file; an unreadable or too large one is a clear error."""
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise CliError(f"--attach {p}: no such file (or not a regular file)")
        size = path.stat().st_size
        if size > MAX_ATTACHMENT_BYTES:
            raise CliError(f"--attach {p}: {size} bytes, over Session's attachment limit of "
                           f"{MAX_ATTACHMENT_BYTES} bytes")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CliError(f"--attach {p}: cannot read it: {exc.strerror}") from None
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        out.append(FileToAttach(p, path.name, data, ctype))
    return out


def prepare_dir(directory: str) -> Path:
    """DIR for ``--save-attachments``: created if missing; an error if it is not a folder."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise CliError(f"--save-attachments {directory}: exists and is not a folder")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--save-attachments {directory}: cannot create it: {exc.strerror}") from None
    return d


def safe_name(ref: AttachmentRef) -> str:
    """The pointer's file name reduced to its last component (a sender cannot pick the folder)."""
    raw = ref.file_name or ""
    base = PureWindowsPath(PurePosixPath(raw).name).name.replace("\x00", "")
    if not base.strip(". "):
        return f"attachment-{ref.file_id}"
    return base


def save(directory: Path, ref: AttachmentRef, data: bytes) -> Path:
    """Write ``data`` under the attachment's name in ``directory`` without overwriting anything."""
    name = safe_name(ref)
    stem, ext = os.path.splitext(name)
    for n in range(MAX_NAME_TRIES):
        target = directory / (name if n == 0 else f"{stem} ({n}){ext}")
        try:
            with open(target, "xb") as fh:
                fh.write(data)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CliError(f"cannot save attachment {ref.file_id} as {target}: {exc.strerror}") from None
        return target
    raise CliError(f"cannot save attachment {ref.file_id}: {MAX_NAME_TRIES} files named like "
                   f"{name!r} already exist in {directory}")
