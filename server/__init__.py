"""The Litestar HTTP server: ``server.app.create_app()``."""
