"""The result cache's index in Redis (entries, LRU order, bytes, claims) and emptying it (``DELETE /cache``)."""
