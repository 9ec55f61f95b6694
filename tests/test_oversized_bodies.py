"""Issue 20, item 10: a client that writes the whole of a body over the limit reads the 413, over a real socket.

A ``python -m server`` process on loopback with MAX_JSON_BYTES and MAX_UPLOAD_BYTES set low; raw sockets, so
that the test controls exactly what is written when: the client writes its whole body (20 MB over the limit)
before it reads anything, as a simple HTTP client does. When the server closes the connection after its
answer (``Connection: close``, HTTP/1.0) with the body still unread, the kernel resets the connection and the
client never sees the 413, unless the server reads (and drops) the rest of the body first.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import redis as redis_sync
from distributed import LocalCluster

from scheduler.wiring.redis_server import EmbeddedRedis
from tests.procs import Proc, free_port

LIMIT = 1024
OVER = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def server(redis_server: EmbeddedRedis, dask_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("oversized")
    url = redis_server.url.rsplit("/", 1)[0] + "/11"
    with redis_sync.Redis.from_url(url) as r:
        r.flushdb()
    proc = Proc("server", {
        "HOST": "127.0.0.1", "PORT": str(free_port()), "REDIS_URL": url,
        "DASK_SCHEDULER_ADDRESS": dask_cluster.scheduler_address, "DATA_DIR": str(tmp / "data"),
        "RUN_DISPATCHER": "false", "RUN_WEBHOOKS": "false",
        "MAX_JSON_BYTES": str(LIMIT), "MAX_UPLOAD_BYTES": str(LIMIT),
    }, tmp / "server.log")
    try:
        proc.start()
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _request_head(path: str, version: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _body_chunks(size: int, chunked: bool) -> Iterator[bytes]:
    block = b"{" + b" " * (1024 * 1024 - 2) + b"}"
    sent = 0
    while sent < size:
        part = block[: min(len(block), size - sent)]
        sent += len(part)
        yield b"%x\r\n%s\r\n" % (len(part), part) if chunked else part
    if chunked:
        yield b"0\r\n\r\n"


def _read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


CASES = {
    # route, HTTP version, extra headers, chunked body
    "json-close": ("/v1/jobs/?job_type=ingest", "1.1", {"Connection": "close", "Content-Type": "application/json"},
                   False),
    "json-http10": ("/jobs/?job_type=ingest", "1.0", {"Content-Type": "application/json"}, False),
    "json-chunked-close": ("/v1/jobs/?job_type=ingest", "1.1",
                           {"Connection": "close", "Content-Type": "application/json"}, True),
    "upload-close": ("/v1/assets/?project_id=p&filename=big.bin", "1.1",
                     {"Connection": "close", "Content-Type": "application/octet-stream"}, False),
    "upload-chunked-close": ("/v1/assets/?project_id=p&filename=big.bin", "1.1",
                             {"Connection": "close", "Content-Type": "application/octet-stream"}, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_client_that_writes_its_whole_oversized_body_reads_the_413(server: Proc, case: str) -> None:
    path, version, headers, chunked = CASES[case]
    size = LIMIT + OVER
    headers = {**headers, **({"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(size)})}
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        try:
            sock.sendall(_request_head(path, version, headers))
            for chunk in _body_chunks(size, chunked):
                sock.sendall(chunk)
            raw = _read_to_eof(sock)
        except OSError as exc:
            pytest.fail(f"{case}: the connection failed while the client sent its body or read the answer: {exc!r}")
    assert raw, f"{case}: the server closed without an answer"
    status, answer_headers, body = _parse(raw)
    assert status == 413, raw[:300]
    assert answer_headers["content-type"].startswith("application/json")
    detail = json.loads(body)
    assert set(detail) == {"detail"} and "limit of 1024 bytes" in detail["detail"], detail

    if case == "json-close":
        # Still as before for a client that stops at the headers (it waits for the answer before its body):
        # the 413 comes at once, not after the bounded wait for a body that never comes.
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(_request_head(path, version, {**headers, "Content-Length": str(size)}))
            started = time.monotonic()
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                assert chunk, "closed without an answer"
                head += chunk
            assert time.monotonic() - started < 2.0
            assert _parse(head)[0] == 413
