"""The core: Redis records, admission of jobs, running them on Dask, notifying clients, and the process wiring.

- ``records/``: everything kept in Redis (jobs and their queue, assets, clip versions, idempotency keys,
  leases, metric counts), every key built by ``records/keys.py``.
- ``admission/``: the job types (one graph each) and the checks a submission passes before it is queued.
- ``dispatch/``: the dispatcher, the job lifecycle state machine, recovery, publishing, the Dask cluster.
- ``notify/``: live updates (WebSocket, SSE) and webhooks.
- ``wiring/``: the runtime that builds all of it from :mod:`scheduler.settings`, and the embedded Redis.

Import the module you need: this package's ``__init__`` imports nothing, so a tool that needs one small part
(the CLI drawing a graph) does not load Dask, Redis or the HTTP client.
"""
