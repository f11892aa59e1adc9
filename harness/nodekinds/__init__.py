"""Node implementations a testnet can run, by name: ``python`` (ours, the default) and
``oxen-storage`` (the production Session storage server). See docs/nodes.md for the contract.

Modules are imported when first used, so :mod:`harness.topology` can validate kind names
without pulling in network code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.nodekinds.base import NodeKind
    from harness.state import NetworkState, NodeRecord

from harness.nodekinds.names import (
    DEFAULT_KIND,
    FILESERVER,
    KIND_CLASSES,
    KIND_NAMES,
    KINDS_WITH_PATH,
    MIN_NODES_WITH_REAL,
    OXEN_STORAGE,
    PATH_ENV,
    PYTHON,
)


def kind_class(name: str) -> type[NodeKind]:
    try:
        module_name, cls_name = KIND_CLASSES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown node kind {name!r}; choose one of {', '.join(KIND_NAMES)}") from None
    cls: type[NodeKind] = getattr(importlib.import_module(module_name), cls_name)
    return cls


def node_kind(name: str, path: str | None = None) -> NodeKind:
    """The implementation ``name`` (with the group's ``path`` where it takes one)."""
    return kind_class(name)(path)




def check_groups(groups: Iterable[tuple[str, str | None]], backend: str) -> None:
    """Raise :class:`~harness.nodekinds.base.NodeKindError` unless every ``(kind, path)`` group
    can run on ``backend`` here (binary present, libraries installed, …)."""
    from harness.nodekinds.base import NodeKindError

    for kind_name, path in groups:
        kind = node_kind(kind_name, path)
        if backend not in kind.backends:
            raise NodeKindError(
                f"{kind_name} nodes run on the {', '.join(sorted(kind.backends))} backend only, "
                f"not {backend}: use --backend {sorted(kind.backends)[0]}")
        kind.check(backend)


def seed_args(state: NetworkState, folder: Path) -> list[str]:
    """Seed options for the testnet's node kinds: the real-node list (written into ``folder``)
    when the testnet has nodes that join over OxenMQ."""
    from harness.nodekinds.oxen_storage import write_node_list

    path = write_node_list(state, folder)
    return ["--oxenmq-nodes", str(path)] if path else []


def place_nodes(state: NetworkState, others: Iterable[NetworkState]) -> None:
    """Allocate what the testnet's node kinds need beyond an address (OxenMQ ports)."""
    from harness.nodekinds.oxen_storage import place_nodes as place_oxen_storage

    place_oxen_storage(state, others)


def check_fault(node: NodeRecord, family: str) -> None:
    """Raise :class:`~harness.nodekinds.base.NodeKindError` (a ValueError) with a clear message
    when faults of ``family`` (``behaviour``, ``clock``, ``partition``, ``network``, ``churn``)
    cannot act on ``node``: e.g. misbehave or clock skew on a node without an admin interface."""
    kind_class(node.kind)().refuse_fault(family, node.name)


def proxy_names(node: NodeRecord) -> list[str]:
    """Every Toxiproxy proxy in front of ``node`` (one per port it serves: ``sn01`` for HTTPS,
    and ``sn01-omq`` for the real server's OxenMQ): a node-level network fault belongs on all."""
    return [p["name"] for p in kind_class(node.kind)().proxies(node)]


__all__ = ["DEFAULT_KIND", "FILESERVER", "KINDS_WITH_PATH", "KIND_NAMES", "MIN_NODES_WITH_REAL", "OXEN_STORAGE",
           "PATH_ENV", "PYTHON", "check_fault", "check_groups", "kind_class", "node_kind", "place_nodes",
           "proxy_names", "seed_args"]
