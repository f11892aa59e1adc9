"""The testnet's file server (`python -m nodes.fileserver`): attachments through onion requests.

Production's session-file-server, as far as clients see it (docs/fileserver.md): ``POST /file``,
``GET /file/<id>``, ``GET /file/<id>/info`` over plain HTTP and inside v4 onion requests
(``POST /oxen/v4/lsrpc``), with production's size limit and expiry; files on disk; the testnet
admin interface (state, observations).
"""
