"""The storage service node (`python -m nodes.snode`).

Wire-compatible with the production Session storage server for everything a client sees
(storage RPC over HTTPS, onion requests); node<->node traffic, the seed protocol and the admin
interface are the testnet's own (docs/DESIGN.md "Storage node").

Logging, TLS, the proof, JSON-RPC and HTTP helpers and the process life cycle are shared with
the seed in `nodes.common`.

Modules:
  config        CLI flags -> Config
  clock         node clock with an admin-settable offset
  storage       SQLite message store (runs in one worker thread)
  swarm_view    service-node list from the seed -> swarms, peers, ownership
  seed_client   proofs + get_service_nodes polling
  peers         authenticated node<->node HTTPS client, peer address overrides, verification
  rpc           storage RPC parsing/validation/handlers (PROTOCOL.md section 4)
  fanout        swarm fan-out of store/delete*/expire*
  replication   pushing messages to new swarm members and re-homing after splits
  onion_handler POST /onion_req/v2 (PROTOCOL.md section 5)
  ratelimit     per-client-IP token buckets
  admin         plain-HTTP admin interface, behaviours, observations
  server        wiring: Node, the storage-port app, startup/shutdown
"""
