"""The Litestar HTTP server."""

from server.app import create_app

__all__ = ["create_app"]
