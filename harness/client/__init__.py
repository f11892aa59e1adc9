"""Session client: production-like onion routing, swarms, 1-to-1 messages, operation records.

    from harness.client import SessionClient, Account

    async with SessionClient(seed_url, Account.generate(), sink=records) as alice:
        rec = await alice.send(bob_session_id, "hello")
        msgs = await alice.wait_for(count=1)

``harness.client.sync.Client`` is the blocking version.  See docs/client.md.
"""

from .account import Account
from .attachments import AttachmentCorrupt, FileServer, FileServerError
from .client import SessionClient
from .clock import NetworkClock
from .config import POLL_ALL, POLL_ONE, POLL_SAMPLE, ClientConfig
from .errors import (
    AccountError,
    BootstrapError,
    ClientError,
    ClockError,
    DestinationError,
    NoPathError,
    PathError,
    RequestRejected,
    RetrieveFailed,
    StoreFailed,
    StoreUnconfirmed,
    SwarmError,
    Timeout,
)
from .paths import OnionPath, PathSet, build_path
from .pool import NodePool
from .receiving import Received
from .records import (
    ONE_OFF_PATH,
    AttachmentRecord,
    AttemptRecord,
    OperationRecord,
    ReceiveRecord,
    RecordSink,
    SendRecord,
    record_from_dict,
)
from .snode import Snode
from .sync import Client

__all__ = [
    "Account", "AttachmentCorrupt", "AttachmentRecord", "Client", "FileServer", "FileServerError", "ClientConfig", "NetworkClock", "NodePool", "OnionPath", "PathSet",
    "POLL_ALL", "POLL_ONE", "POLL_SAMPLE", "Received", "SessionClient", "Snode", "build_path",
    "ONE_OFF_PATH", "AttemptRecord", "OperationRecord", "ReceiveRecord", "RecordSink", "SendRecord", "record_from_dict",
    "AccountError", "BootstrapError", "ClientError", "ClockError", "DestinationError", "NoPathError",
    "PathError", "RequestRejected", "RetrieveFailed", "StoreFailed", "StoreUnconfirmed", "SwarmError",
    "Timeout",
]
