"""Process wiring: settings, the embedded Redis server, and the runtime that builds everything from them."""
