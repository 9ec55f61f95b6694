"""Live updates and notifications: the pub/sub hub behind WebSocket and SSE, and webhooks."""
