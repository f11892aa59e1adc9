"""Node implementations a testnet can run, by name: ``python`` (ours, the default; optionally
another git revision of it), ``oxen-storage`` (the production Session storage server), and the
user's own ``command`` / ``image``. See docs/nodes.md for the contract.

Modules are imported when first used, so :mod:`harness.topology` can validate kind names
without pulling in network code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.nodekinds.base import GroupSpec, NodeKind
    from harness.state import NetworkState, NodeRecord

from harness.nodekinds.names import (
    COMMAND,
    DEFAULT_KIND,
    FILESERVER,
    IMAGE,
    KIND_CLASSES,
    KIND_NAMES,
    KINDS_DECLARING_ADMIN,
    KINDS_NEEDING_PATH,
    KINDS_OVER_OXENMQ,
    KINDS_WITH_FILE_PATH,
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


def node_kind(name: str, path: str | None = None, *, ref: str | None = None,
              has_admin: bool | None = None) -> NodeKind:
    """The implementation ``name`` with its group's settings: ``path`` where it takes one,
    ``ref`` (python: another git revision), ``has_admin`` (the user's own nodes)."""
    cls: Any = kind_class(name)
    kwargs: dict[str, Any] = {}
    if ref is not None:
        kwargs["ref"] = ref
    if has_admin is not None:
        kwargs["has_admin"] = has_admin
    kind: NodeKind = cls(path, **kwargs)
    return kind


def group_kind(group: GroupSpec) -> NodeKind:
    """The implementation of a topology's node group."""
    return node_kind(group.kind, group.path, ref=group.ref, has_admin=group.has_admin)


def record_kind(node: NodeRecord) -> NodeKind:
    """The implementation of a planned node, from its state record alone."""
    return kind_class(node.kind).for_record(node)


def pin_revision(ref: str) -> str:
    """The commit of a group's git ref (``N:python@REF``), after extracting that revision and
    checking that it takes today's node contract (a
    :class:`~harness.nodekinds.base.NodeKindError` names the ref and what is missing). A testnet
    records the commit, so later commands run the same code even if the ref moves."""
    from harness.nodekinds.revisions import pinned

    return pinned(ref).commit


def check_groups(groups: Iterable[GroupSpec], backend: str) -> None:
    """Raise :class:`~harness.nodekinds.base.NodeKindError` unless every group can run on
    ``backend`` here (binary present, libraries installed, revision usable, …)."""
    from harness.nodekinds.base import NodeKindError

    for group in groups:
        kind = group_kind(group)
        if backend not in kind.backends:
            raise NodeKindError(
                f"{group.kind} nodes run on the {', '.join(sorted(kind.backends))} backend only, "
                f"not {backend}: use --backend {sorted(kind.backends)[0]}")
        kind.check(backend)


def seed_args(state: NetworkState, folder: Path,
              link_ip: Callable[[str, str], str] | None = None) -> list[str]:
    """Seed options for the testnet's node kinds: the real-node list (written into ``folder``)
    when the testnet has nodes that join over OxenMQ; ``link_ip(src, dst)`` places the link
    proxies real nodes see each other at (:func:`pair_link_proxies`)."""
    from harness.nodekinds.oxen_storage import write_node_list

    path = write_node_list(state, folder, link_ip)
    return ["--oxenmq-nodes", str(path)] if path else []


def pair_link_proxies(state: NetworkState, link_ip: Callable[[str, str], str]
                      ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The Toxiproxy proxies and UDP relays through which every pair of nodes that cannot be
    re-pointed at run time (real servers) talks from the start (docs/nodes.md)."""
    from harness.nodekinds.oxen_storage import pair_links

    links = pair_links(state, link_ip)
    return [p for link in links for p in link.proxies()], [link.udp_relay() for link in links]


def place_nodes(state: NetworkState, others: Iterable[NetworkState]) -> None:
    """Allocate what the testnet's node kinds need beyond an address (OxenMQ ports)."""
    from harness.nodekinds.oxen_storage import place_nodes as place_oxen_storage

    place_oxen_storage(state, others)


def check_fault(node: NodeRecord, family: str, backend: str | None = None) -> None:
    """Raise :class:`~harness.nodekinds.base.NodeKindError` (a ValueError) with a clear message
    when faults of ``family`` (``behaviour``, ``clock``, ``partition``, ``network``, ``churn``)
    cannot act on ``node``: e.g. misbehave or clock skew on a node without an admin interface."""
    record_kind(node).refuse_fault(family, node.name, backend)


def proxy_names(node: NodeRecord) -> list[str]:
    """Every Toxiproxy proxy in front of ``node`` (one per port it serves: ``sn01`` for HTTPS,
    and ``sn01-omq`` for the real server's OxenMQ): a node-level network fault belongs on all."""
    return [p["name"] for p in record_kind(node).proxies(node)]


__all__ = ["COMMAND", "DEFAULT_KIND", "FILESERVER", "IMAGE", "KINDS_DECLARING_ADMIN", "KINDS_NEEDING_PATH",
           "KINDS_OVER_OXENMQ", "KINDS_WITH_FILE_PATH", "KINDS_WITH_PATH", "KIND_NAMES",
           "MIN_NODES_WITH_REAL", "OXEN_STORAGE", "PATH_ENV", "PYTHON", "check_fault",
           "check_groups", "group_kind", "kind_class", "node_kind", "pair_link_proxies", "pin_revision", "place_nodes",
           "proxy_names", "record_kind", "seed_args"]
