"""The names of node implementations and the facts about them that need no code of theirs
(a leaf module: the implementations and the registry in ``harness.nodekinds`` both read it)."""

from __future__ import annotations

from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_KEY_SEED

PYTHON = "python"
OXEN_STORAGE = "oxen-storage"
#: the user's own node: a program (process backend) or an image (docker backend) that takes
#: everything through the node contract's environment (docs/nodes.md)
COMMAND = "command"
IMAGE = "image"
#: the file server: run like a node, never a topology node group
FILESERVER = "fileserver"

#: kind name -> "module:class"
KIND_CLASSES: dict[str, str] = {
    PYTHON: "harness.nodekinds.python:PythonNode",
    OXEN_STORAGE: "harness.nodekinds.oxen_storage:OxenStorageNode",
    COMMAND: "harness.nodekinds.custom:CommandNode",
    IMAGE: "harness.nodekinds.custom:ImageNode",
    FILESERVER: "harness.nodekinds.fileserver:FileServerKind",
}
#: the kinds a topology's node groups may use
KIND_NAMES: tuple[str, ...] = (PYTHON, OXEN_STORAGE, COMMAND, IMAGE)
DEFAULT_KIND = PYTHON

#: kinds whose nodes take a path (``N:KIND=PATH``)
KINDS_WITH_PATH: frozenset[str] = frozenset({OXEN_STORAGE, COMMAND, IMAGE})
#: ... of which these name a file (made absolute when the topology is created)
KINDS_WITH_FILE_PATH: frozenset[str] = frozenset({OXEN_STORAGE, COMMAND})
#: kinds that cannot do without their path (kind -> what it is)
KINDS_NEEDING_PATH: dict[str, str] = {COMMAND: "the node program", IMAGE: "the node image"}
#: kinds whose groups declare whether their nodes have the admin interface (``has_admin``)
KINDS_DECLARING_ADMIN: frozenset[str] = frozenset({COMMAND, IMAGE})
#: kinds that join the seed over OxenMQ as oxend's clients (the real server): they cannot share
#: a testnet with nodes that speak only HTTP between nodes (docs/nodes.md)
KINDS_OVER_OXENMQ: frozenset[str] = frozenset({OXEN_STORAGE})
#: where the path comes from when a group gives none
PATH_ENV: dict[str, str] = {OXEN_STORAGE: "SESSION_TESTNET_OXEN_STORAGE"}

#: the real server asks hard-coded public seed nodes when its first node list (testnet mode)
#: holds fewer than 10 nodes: a testnet with real nodes must list at least this many
MIN_NODES_WITH_REAL = 10

#: every flag the harness may pass our python node (harness.nodekinds.python): another git
#: revision of it must take them all
PYTHON_ARGV_FLAGS: tuple[str, ...] = (
    "--ip", "--public-ip", "--port", "--admin-port", "--seed-url", "--data-dir", "--name",
    "--proof-interval", "--poll-interval", "--rate-limit", "--log-file")
#: the environment variables (secrets) the harness passes our python node
PYTHON_ENV_NAMES: tuple[str, ...] = (ENV_KEY_SEED, ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN)
