"""Redis records: jobs and their queue, assets, clip versions, idempotency keys, leases (fencing), metric counts and the one key layout."""
