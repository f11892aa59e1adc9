"""The real server's image recipe: content-addressed tag, build context, entrypoint (no engine)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from harness.images import ImageError
from harness.images.oxen_storage import (
    BINARY_IN_IMAGE,
    DOCKERFILE_APT,
    DOCKERFILE_OFFLINE,
    ENTRYPOINT,
    RUNTIME_PACKAGES,
    _context,
    binary_digest,
    ensure_oxen_storage_image,
    oxen_storage_image_tag,
)


def test_tag_follows_the_binary(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"server 1")
    b.write_bytes(b"server 2")
    ta, tb = oxen_storage_image_tag(binary_digest(a)), oxen_storage_image_tag(binary_digest(b))
    assert ta.startswith("session-testnet/oxen-storage:") and len(ta.rsplit(":", 1)[1]) == 12
    assert ta != tb
    assert ta == oxen_storage_image_tag(binary_digest(a))


def test_context_holds_binary_dh_and_entrypoint(tmp_path: Path) -> None:
    binary = tmp_path / "oxen-storage"
    binary.write_bytes(b"\x7fELF fake")
    buf = io.BytesIO()
    _context(binary, DOCKERFILE_OFFLINE, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"Dockerfile", "dh.pem", "entrypoint.sh", "oxen-storage"}
        assert members["oxen-storage"].mode == 0o755 and members["entrypoint.sh"].mode == 0o755
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
        assert "RUN" not in dockerfile, "the offline recipe installs nothing in the build"
        assert b"BEGIN DH PARAMETERS" in tar.extractfile("dh.pem").read()  # type: ignore[union-attr]
    assert f"COPY oxen-storage {BINARY_IN_IMAGE}" in dockerfile
    assert all(p in DOCKERFILE_APT for p in RUNTIME_PACKAGES)


def test_entrypoint_cuts_the_route_out_and_drops_privileges() -> None:
    assert "ip route del default" in ENTRYPOINT
    assert "setpriv --reuid=10001" in ENTRYPOINT and "--bounding-set=-all" in ENTRYPOINT
    assert ENTRYPOINT.rstrip().endswith('-- "$@"')


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no oxen-storage binary at"):
        ensure_oxen_storage_image(object(), tmp_path / "nope")  # type: ignore[arg-type]
