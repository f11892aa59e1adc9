"""Code shared by the seed (`nodes.seed`) and the storage node (`nodes.snode`).

Only the testnet's own plumbing lives here; the client-visible wire protocol is `nodes.protocol`.

Modules:
  logs      structured JSON-lines logger (``ts``, ``level``, ``node``, ``event``, fields…)
  tls       self-signed certificates in ``DATA_DIR/tls/``, server/client TLS contexts
  files     atomic file writes
  values    strict JSON value checks (integers, 32-byte hex keys, ip:port)
  jsonrpc   JSON-RPC 2.0 envelopes and error codes (seed server, node client)
  http      aiohttp helpers: JSON errors and bodies, listening with clear errors, client sessions
  proof     the node→seed proof (signed message and body)
  service   running a service until SIGTERM/SIGINT
  netlink   adding /32 addresses through rtnetlink (run by the docker backend in a proxy host)
"""
