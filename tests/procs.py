"""Real processes for the live-update tests: ``python -m server`` and ``python -m scheduler`` on loopback,
any other command in its own process group (the chaos test's Redis and Dask), a local webhook receiver,
and running a command under a pseudo-terminal."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """``python -m server`` (``kind="server"``) or ``python -m scheduler`` with its output in a log file."""

    def __init__(self, kind: str, env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.env = dict(env)
        self.log_path = log_path
        self.port = int(env.get("PORT") or 0)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.kind]

    def start(self) -> Proc:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{self.tail()}")
            if self.is_ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.kind} not ready in {timeout}s:\n{self.tail()}")

    def is_ready(self) -> bool:
        """A server: its diagnostics see Redis and the cluster; a dispatcher: its log says it runs."""
        if self.kind == "server":
            with contextlib.suppress(httpx.HTTPError, ValueError):
                diag = httpx.get(f"{self.url}/health/diagnostics", timeout=2).json()
                return bool(diag["queue"]["connected"] and diag["cluster"]["connected"])
            return False
        return "running" in self.tail(5) and "dispatcher" in self.tail(5)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None


class Command(Proc):
    """Any command line (``redis-server``, a Dask scheduler or worker) in its own process group.

    ``ready(self)`` says when it is up. :meth:`send` signals the whole group, so a Dask nanny
    and the worker it spawned are stopped (or killed) together. It can be started again after
    :meth:`kill` (a Redis restarted on the same port and data folder)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path,
                 ready: Callable[[Command], bool]) -> None:
        super().__init__(name, env, log_path)
        self.argv = list(argv)
        self.ready = ready

    def command(self) -> list[str]:
        return self.argv

    def is_ready(self) -> bool:
        with contextlib.suppress(Exception):  # not up yet: refused connections and the like
            return bool(self.ready(self))
        return False

    def send(self, sig: int) -> None:
        assert self.proc is not None, f"{self.kind} is not running"
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group and reap it: the process is gone, as in a crash."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.stop()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        # A stopped (SIGSTOP) group would never act on the signal: let it run first.
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGCONT)
        super().stop(sig, timeout)


class Receiver:
    """A webhook receiver on 127.0.0.1: ``/<name>`` answers 500 to its first ``fail[name]`` requests, then 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = self.path.strip("/")
                with receiver._lock:
                    n = receiver._seen[name] = receiver._seen.get(name, 0) + 1
                    code = 500 if n <= receiver.fail.get(name, 0) else 200
                    receiver.requests.append({"name": name, "at": time.time(), "headers": dict(self.headers),
                                              "body": body, "code": code})
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{name}"

    def got(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["name"] == name]

    def wait(self, name: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.got(name)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"{name}: {len(self.got(name))} webhook requests, expected {count}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def run_in_pty(argv: list[str], env: dict[str, str], *, steps: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
               timeout: float = 60, cwd: Path = ROOT) -> tuple[int, bytes]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal (stdin, stdout and stderr).

    ``steps``: when the (ANSI-stripped) output so far contains the text, write the bytes
    (``b"\\x03"`` is Ctrl-C, which the terminal turns into SIGINT). Returns (exit code, raw output).
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        try:
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    output = b""
    pending = list(steps)
    deadline = time.monotonic() + timeout
    status = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                output += data
            if pending and pending[0][0].encode() in ANSI.sub(b"", output):
                os.write(fd, pending.pop(0)[1])
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
                # drain what is left
                with contextlib.suppress(OSError):
                    while select.select([fd], [], [], 0.1)[0]:
                        data = os.read(fd, 65536)
                        if not data:
                            break
                        output += data
                break
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"{argv} did not end in {timeout}s; output:\n{ANSI.sub(b'', output).decode(errors='replace')}")
        if status is None:
            _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def plain(output: bytes) -> str:
    return ANSI.sub(b"", output).decode(errors="replace")


def sse_events(lines: Any) -> Any:
    """Parse ``text/event-stream`` lines into ``{"id", "data", "comment"}`` dicts as they arrive."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if event:
                if "data" in event:
                    event["record"] = json.loads(event["data"])
                yield event
            event = {}
            continue
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
            continue
        key, _, value = line.partition(":")
        event[key] = value[1:] if value.startswith(" ") else value
