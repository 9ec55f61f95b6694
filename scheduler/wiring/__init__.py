"""Process wiring: the embedded Redis server, and the runtime that builds everything from Settings."""
