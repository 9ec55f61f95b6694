"""A real S3 server for the tests: moto's standalone server in its own process, on loopback.

``python -m tests.s3server --port N`` serves moto's own WSGI app (what ``moto_server`` runs) behind
a small meter that counts the bytes of every object ``GET`` (per path, ranged reads included), and
can hold requests of one method for a while (a slow store). The meter answers under ``/_meter/``:

- ``GET /_meter/reads``: ``{"/bucket/key": bytes sent, ...}``; ``POST /_meter/reset`` clears it;
- ``POST /_meter/delay?method=HEAD&seconds=1.5`` holds each HEAD that long (``seconds=0``: no more).

:class:`S3Server` starts it as a subprocess on a free port and talks to it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

from tests.procs import ROOT, free_port

__all__ = ["CREDENTIALS", "S3Server"]

CREDENTIALS = {"key": "testing", "secret": "testing"}
_StartResponse = Callable[..., Any]


class _Meter:
    """WSGI middleware around moto's app: counts object bytes sent and delays requests on demand."""

    def __init__(self, app: Callable[[dict[str, Any], _StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.reads: dict[str, int] = {}
        self.delays: dict[str, float] = {}

    def __call__(self, environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path.startswith("/_meter/"):
            return self._control(path, method, parse_qs(environ.get("QUERY_STRING", "")), start_response)
        delay = self.delays.get(method, 0.0)
        if delay:
            time.sleep(delay)
        body = self.app(environ, start_response)
        # Path style (/bucket/key): two segments name an object; /bucket?list-type=2 is a listing.
        if method == "GET" and path.strip("/").count("/") >= 1:
            return self._counted(path, body)
        return body

    def _counted(self, path: str, body: Iterable[bytes]) -> Iterator[bytes]:
        try:
            for chunk in body:
                with self.lock:
                    self.reads[path] = self.reads.get(path, 0) + len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def _control(self, path: str, method: str, query: dict[str, list[str]],
                 start_response: _StartResponse) -> list[bytes]:
        with self.lock:
            if path == "/_meter/reset" and method == "POST":
                self.reads.clear()
            elif path == "/_meter/delay" and method == "POST":
                self.delays[query["method"][0].upper()] = float(query["seconds"][0])
            answer = json.dumps(self.reads).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
        return [answer]


class S3Server:
    """The metered moto server as a real process on 127.0.0.1 (a free port)."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> S3Server:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.s3server", "--port", str(self.port)], cwd=ROOT,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                httpx.get(f"{self.url}/_meter/reads", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"the S3 server did not answer in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> Any:
        """A boto3 S3 client: the tests' own way in, independent of the code under test."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["key"], aws_secret_access_key=CREDENTIALS["secret"])

    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.url, **CREDENTIALS}

    def reads(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/_meter/reads", timeout=5).json())

    def reset(self) -> None:
        httpx.post(f"{self.url}/_meter/reset", timeout=5).raise_for_status()

    def delay(self, method: str, seconds: float) -> None:
        httpx.post(f"{self.url}/_meter/delay", params={"method": method, "seconds": seconds},
                   timeout=5).raise_for_status()


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto_server sets it (moto builds URLs with it)
    app = _Meter(DomainDispatcherApplication(create_backend_app))
    run_simple("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
