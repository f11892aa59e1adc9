"""Code volumes (harness/images/code.py): which folders, which volume names, which mounts."""

from __future__ import annotations

from harness.images.code import CODE_PATHS_LABEL, code_mounts, code_paths, slot_volumes, volume_base

IMAGE_ID = "sha256:f9c85fec6a74" + "0" * 52


def test_code_paths_come_from_the_label_and_only_absolute_folders():
    assert code_paths({CODE_PATHS_LABEL: "/usr/lib/python3.11 /opt/venv /app"}) == (
        "/usr/lib/python3.11", "/opt/venv", "/app")
    assert code_paths({CODE_PATHS_LABEL: " relative / /app "}) == ("/app",)
    assert code_paths({CODE_PATHS_LABEL: ""}) == ()
    assert code_paths({}) == ()
    assert code_paths(None) == ()


def test_volume_names_follow_the_image_id():
    assert volume_base(IMAGE_ID) == "session-testnet-code-f9c85fec6a74"
    assert slot_volumes(IMAGE_ID, ("/usr/lib/python3.11", "/app")) == {
        "/usr/lib/python3.11": "session-testnet-code-f9c85fec6a74-0",
        "/app": "session-testnet-code-f9c85fec6a74-1",
    }
    other = "sha256:0123456789ab" + "f" * 52
    assert set(slot_volumes(other, ("/app",)).values()).isdisjoint(
        slot_volumes(IMAGE_ID, ("/app",)).values())


def test_mounts_are_read_only_volumes():
    mounts = code_mounts({"/app": "v-1", "/opt/venv": "v-2"})
    assert [(m["Target"], m["Source"], m["Type"], m["ReadOnly"]) for m in mounts] == [
        ("/app", "v-1", "volume", True), ("/opt/venv", "v-2", "volume", True)]
    assert code_mounts({}) == []
