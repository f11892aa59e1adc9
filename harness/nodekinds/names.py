"""The names of node implementations and the facts about them that need no code of theirs
(a leaf module: the implementations and the registry in ``harness.nodekinds`` both read it)."""

from __future__ import annotations

PYTHON = "python"
OXEN_STORAGE = "oxen-storage"
#: the file server: run like a node, never a topology node group
FILESERVER = "fileserver"

#: kind name -> "module:class"
KIND_CLASSES: dict[str, str] = {
    PYTHON: "harness.nodekinds.python:PythonNode",
    OXEN_STORAGE: "harness.nodekinds.oxen_storage:OxenStorageNode",
    FILESERVER: "harness.nodekinds.fileserver:FileServerKind",
}
#: the kinds a topology's node groups may use
KIND_NAMES: tuple[str, ...] = (PYTHON, OXEN_STORAGE)
DEFAULT_KIND = PYTHON

#: kinds whose nodes take a path (``N:KIND=PATH``)
KINDS_WITH_PATH: frozenset[str] = frozenset({OXEN_STORAGE})
#: where the path comes from when a group gives none
PATH_ENV: dict[str, str] = {OXEN_STORAGE: "SESSION_TESTNET_OXEN_STORAGE"}

#: the real server asks hard-coded public seed nodes when its first node list (testnet mode)
#: holds fewer than 10 nodes: a testnet with real nodes must list at least this many
MIN_NODES_WITH_REAL = 10
