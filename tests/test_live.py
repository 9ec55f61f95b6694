"""Live updates across processes: WebSocket, SSE, webhooks and the ``ave`` CLI against real servers.

Two API servers (A and B, ``RUN_DISPATCHER=false``) and a separate dispatcher (``python -m scheduler``)
share one Redis database and the session's Dask cluster: a client of server B sees the changes the
dispatcher makes. A third server (C) has a Redis database of its own and no dispatcher, so its jobs
stay queued: it serves the idle-stream, Last-Event-ID and restart-in-the-middle-of-retries checks.
Everything listens on 127.0.0.1; webhooks go to a receiver on 127.0.0.1.

Every process imports tests/steps_ops.py first, for the ``steps`` graph: a job whose task moves only when
the test opens its gates, so a test sees each of its steps whatever the speed of the machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
import websockets
from distributed import LocalCluster

from scheduler.dispatch.eta import MIN_SPAN_SECONDS
from scheduler.wiring.redis_server import EmbeddedRedis
from tests.conftest import wait_until
from tests.procs import ROOT, Proc, Receiver, free_port, plain, run_in_pty, sse_events
from tests.steps_ops import Gate

SECRET = "test-webhook-secret"
TEST_GRAPHS = Path(__file__).resolve().parent / "graphs"
ORDER = {"pending": 0, "queued": 1, "in_progress": 2, "completed": 3, "failed": 3, "cancelled": 3}
TERMINAL = ("completed", "failed", "cancelled")
AVE = Path(sys.executable).parent / "ave"
#: The progress the ``steps`` jobs report, one gate at a time.
FRACTIONS = [0.25, 0.5, 0.75]


class StepsProc(Proc):
    """``python -m server`` or ``python -m scheduler``, with test.steps registered first (for graphs/steps)."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import runpy, tests.steps_ops; "
                f"runpy.run_module({self.kind!r}, run_name='__main__', alter_sys=True)"]


class Live:
    def __init__(self, a: Proc, b: Proc, dispatcher: Proc, c: Proc, receiver: Receiver, tmp: Path,
                 env_c: dict[str, str]) -> None:
        self.a, self.b, self.dispatcher, self.c = a, b, dispatcher, c
        self.receiver = receiver
        self.tmp = tmp
        self.env_c = env_c
        self.media = tmp / "data" / "media"

    def gate(self, job_id: str) -> Gate:
        """The gate of a ``steps`` job's task."""
        return Gate(self.media, job_id, "step")


def _db_url(base: str, db: int) -> str:
    return base.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture(scope="module")
def live(redis_server: EmbeddedRedis, dask_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live")
    graphs = tmp / "graphs"
    graphs.mkdir()
    for name in ("sleepy", "broken", "fanout", "steps"):
        shutil.copy(TEST_GRAPHS / f"{name}.yaml", graphs)
    for name in ("ingest", "transcribe"):
        shutil.copy(ROOT / "graphs" / f"{name}.yaml", graphs)
    main_url, own_url = _db_url(redis_server.url, 7), _db_url(redis_server.url, 8)
    for url in (main_url, own_url):
        with redis_sync.Redis.from_url(url) as r:
            r.flushdb()
    base = {
        "HOST": "127.0.0.1",
        "DASK_SCHEDULER_ADDRESS": dask_cluster.scheduler_address,
        "GRAPHS_DIR": str(graphs),
        "DATA_DIR": str(tmp / "data"),
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_RETRY_BASE_SECONDS": "0.05",
        "WEBHOOK_RETRY_FACTOR": "2",
        "WEBHOOK_MAX_ATTEMPTS": "5",
        "WEBHOOK_TIMEOUT_SECONDS": "3",
        "SSE_HEARTBEAT_SECONDS": "0.5",
        "LOG_LEVEL": "info",
        "MAX_RUNNING_JOBS": "4",
    }
    env_a = {**base, "REDIS_URL": main_url, "RUN_DISPATCHER": "false", "PORT": str(free_port())}
    env_b = {**env_a, "PORT": str(free_port())}
    env_d = {**base, "REDIS_URL": main_url}
    env_c = {**base, "REDIS_URL": own_url, "RUN_DISPATCHER": "false", "PORT": str(free_port()),
             "WEBHOOK_RETRY_BASE_SECONDS": "0.5"}
    procs = [StepsProc("server", env_a, tmp / "a.log"), StepsProc("server", env_b, tmp / "b.log"),
             StepsProc("scheduler", env_d, tmp / "dispatcher.log"), StepsProc("server", env_c, tmp / "c.log")]
    receiver = Receiver()
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_ready()
        yield Live(*procs, receiver=receiver, tmp=tmp, env_c=env_c)
    finally:
        for proc in procs:
            proc.stop()
        receiver.close()


def submit(proc: Proc, job_type: str, payload: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = httpx.post(f"{proc.url}/jobs/", params={"job_type": job_type, **params}, json=payload, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


def get_job(proc: Proc, job_id: str) -> httpx.Response:
    return httpx.get(f"{proc.url}/jobs/{job_id}", timeout=10)


async def follow_ws(url: str, timeout: float = 30, into: list[tuple[float, dict[str, Any], str]] | None = None
                    ) -> tuple[list[tuple[float, dict[str, Any], str]], int, str]:
    """Every message of a WebSocket (arrival time, parsed, raw) until it closes; and its close code and reason.

    ``into``: the list to append the messages to as they arrive (for a test that watches them meanwhile)."""
    got: list[tuple[float, dict[str, Any], str]] = [] if into is None else into
    async with asyncio.timeout(timeout):
        async with websockets.connect(url) as ws:
            try:
                async for raw in ws:
                    got.append((time.time(), json.loads(raw), raw))
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
            return got, ws.close_code or 0, ws.close_reason or ""


def check_sequence(records: list[dict[str, Any]]) -> None:
    """Statuses only move forward, progress, updated_at and the log never go back, the terminal one is last."""
    for before, after in zip(records, records[1:]):
        assert ORDER[after["status"]] >= ORDER[before["status"]], (before["status"], after["status"])
        p0 = (before["result_payload"] or {}).get("progress", 0)
        p1 = (after["result_payload"] or {}).get("progress", 0)
        assert p1 >= p0, f"progress went back: {p0} -> {p1}"
        assert after["updated_at"] >= before["updated_at"]
        assert len((after["result_payload"] or {}).get("log", [])) >= len((before["result_payload"] or {}).get("log", []))
        assert before["status"] not in TERMINAL, "a message after the terminal one"
    assert records[-1]["status"] in TERMINAL


# -- WebSocket -----------------------------------------------------------------------------
def _progress(record: dict[str, Any]) -> float | None:
    return record["result_payload"]["progress"] if record["result_payload"] else None


async def _until(condition: Any, what: str, timeout: float = 30) -> None:
    """Poll ``condition()`` until it is true; else fail, saying what did not happen."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"in {timeout:g}s: {what}") from None


def test_websocket_on_server_b_follows_what_the_dispatcher_does(live: Live) -> None:
    """Clients of B (and of A) follow a job submitted on A and run by the separate dispatcher.

    The job's task reports each of FRACTIONS only when the test opens its gate, and the test opens the
    next one only once every client has seen the last: each client sees every step, on any machine.
    """
    job = submit(live.a, "steps", {"fractions": FRACTIONS, "tag": "ws"})
    gate = live.gate(job["id"])
    urls = [f"{live.b.ws_url}/ws/jobs/{job['id']}"] * 6 + [f"{live.a.ws_url}/ws/jobs/{job['id']}"] * 2
    got: list[list[tuple[float, dict[str, Any], str]]] = [[] for _ in urls]

    def everyone_saw(fraction: float) -> bool:
        return all(any(_progress(r) == fraction for _, r, _ in messages) for messages in got)

    async def scenario() -> list[Any]:
        clients = [asyncio.create_task(follow_ws(url, into=into)) for url, into in zip(urls, got)]
        try:
            await _until(lambda: all(got) and gate.runs, "every client to connect and the task to start")
            for step, fraction in enumerate(FRACTIONS, start=1):
                if step == 2:
                    # No ETA before MIN_SPAN_SECONDS of signal: with this much since the job started, the
                    # next progress comes with one (a lower bound on time, not a race).
                    await asyncio.sleep(MIN_SPAN_SECONDS + 0.1)
                gate.open(step)
                await _until(lambda f=fraction: everyone_saw(f), f"every client to see progress {fraction}")
            gate.open(len(FRACTIONS) + 1)
            return await asyncio.gather(*clients)
        finally:
            gate.open_all()
            for client in clients:
                client.cancel()

    results = asyncio.run(scenario())
    final = get_job(live.b, job["id"])
    for messages, code, reason in results:
        records = [r for _, r, _ in messages]
        assert code == 1000 and reason == "completed"
        assert all(set(r) == set(job) for r in records)
        check_sequence(records)
        assert records[-1]["status"] == "completed"
        # The last message is byte for byte the body of GET /jobs/{id}.
        assert messages[-1][2] == final.text
        # Every step, in order (0.999: the graph done, before the job's final write).
        steps = list(dict.fromkeys(p for r in records if (p := _progress(r)) is not None and 0 < p < 0.999))
        assert steps == FRACTIONS, steps
        # The ETA: none until there is signal, then from the rate (0.5 done in at least MIN_SPAN_SECONDS:
        # at least as long again), 0 once completed.
        etas = {_progress(r): r["result_payload"]["eta_seconds"] for r in records
                if r["result_payload"] and r["status"] == "in_progress"}
        assert etas[0.5] is not None and etas[0.5] >= MIN_SPAN_SECONDS, etas
        assert etas[0.75] is not None and etas[0.75] > 0, etas
        assert records[-1]["result_payload"]["eta_seconds"] == 0.0
        assert records[-1]["result_payload"]["outputs"] == {"tag": "ws"}
    assert gate.runs == 1 and gate.exit == "finished"
    # How soon a change reaches a client is a measurement, not a property: bench/live.py measures it.


def test_websocket_unknown_job_closes_4404(live: Live) -> None:
    got, code, reason = asyncio.run(follow_ws(f"{live.b.ws_url}/ws/jobs/job_doesnotexist"))
    assert got == [] and code == 4404 and reason == "Job job_doesnotexist not found"


def test_websocket_cancel_elsewhere_and_finished_job(live: Live) -> None:
    """A cancel on A reaches a client of B with its log line; a finished job sends its record and closes."""
    job = submit(live.a, "sleepy", {"seconds": 30})

    async def scenario() -> Any:
        follower = asyncio.create_task(follow_ws(f"{live.b.ws_url}/ws/jobs/{job['id']}"))
        for _ in range(200):
            if get_job(live.a, job["id"]).json()["status"] == "in_progress":
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert httpx.post(f"{live.a.url}/jobs/{job['id']}/cancel").status_code == 200
        return await follower

    got, code, reason = asyncio.run(scenario())
    records = [r for _, r, _ in got]
    check_sequence(records)
    assert code == 1000 and reason == "cancelled"
    assert records[-1]["status"] == "cancelled"
    assert records[-1]["result_payload"]["log"][-1]["message"] == "Cancelled by request"
    again, code, _ = asyncio.run(follow_ws(f"{live.a.ws_url}/ws/jobs/{job['id']}"))
    assert code == 1000 and len(again) == 1 and again[0][2] == get_job(live.a, job["id"]).text


# -- server-sent events --------------------------------------------------------------------
def test_sse_stream_reconnect_with_last_event_id(live: Live) -> None:
    """A client that reconnects with Last-Event-ID gets what changed while it was away (the job's steps move
    only when the test opens their gates, so the changes certainly happen while it is disconnected)."""
    job = submit(live.a, "steps", {"fractions": FRACTIONS})
    gate = live.gate(job["id"])
    url = f"{live.b.url}/jobs/{job['id']}/events"
    first: list[dict[str, Any]] = []
    try:
        with httpx.stream("GET", url, timeout=30) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in sse_events(response.iter_lines()):
                if "record" in event:
                    first.append(event)
                    if not gate.folder.joinpath("go-1").exists():
                        gate.open(1)  # connected: let the first step happen while we listen
                    if _progress(event["record"]) == FRACTIONS[0]:
                        break
        ids = [int(e["id"]) for e in first]
        assert ids == sorted(set(ids))
        last = ids[-1]
        # Changes happen while disconnected: the next two steps.
        gate.open(2)
        gate.open(3)
        wait_until(lambda: _progress(get_job(live.a, job["id"]).json()) == FRACTIONS[2], 30,
                   "the job to reach its last step")
        second: list[dict[str, Any]] = []
        with httpx.stream("GET", url, headers={"Last-Event-ID": str(last)}, timeout=30) as response:
            for event in sse_events(response.iter_lines()):
                if "record" in event:
                    second.append(event)
                    if len(second) == 1:
                        gate.open(4)  # reconnected: let it end
    finally:
        gate.open_all()
    # The stream ended by itself after the terminal event.
    assert int(second[0]["id"]) > last
    records = [e["record"] for e in first + second]
    check_sequence(records)
    assert records[-1]["status"] == "completed"
    # The first record after the reconnect holds the progress made meanwhile.
    assert _progress(first[-1]["record"]) == FRACTIONS[0] and _progress(second[0]["record"]) == FRACTIONS[2]
    assert json.dumps(records[-1], separators=(",", ":")) == get_job(live.a, job["id"]).text
    # Having seen the terminal event: 204, which stops an EventSource from reconnecting.
    done = httpx.get(url, headers={"Last-Event-ID": second[-1]["id"]}, timeout=10)
    assert done.status_code == 204
    missing = httpx.get(f"{live.b.url}/jobs/job_doesnotexist/events", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"detail": "Job job_doesnotexist not found"}


def test_sse_heartbeat_and_missed_terminal_event(live: Live) -> None:
    """On C (no dispatcher) a job stays queued: the idle stream gets heartbeats; the cancel made while
    the client was away is what it gets on reconnecting."""
    job = submit(live.c, "sleepy", {})
    url = f"{live.c.url}/jobs/{job['id']}/events"
    seen: list[dict[str, Any]] = []
    with httpx.stream("GET", url, timeout=10) as response:
        started = time.monotonic()
        for event in sse_events(response.iter_lines()):
            seen.append(event)
            if event.get("comment") == "keepalive":
                break
    assert time.monotonic() - started < 5
    records = [e for e in seen if "record" in e]
    assert len(records) == 1 and records[0]["record"]["status"] == "queued"
    assert httpx.post(f"{live.c.url}/jobs/{job['id']}/cancel").status_code == 200
    with httpx.stream("GET", url, params={"last_event_id": records[0]["id"]}, timeout=10) as response:
        again = [e for e in sse_events(response.iter_lines()) if "record" in e]
    assert len(again) == 1 and again[0]["record"]["status"] == "cancelled"
    assert int(again[0]["id"]) > int(records[0]["id"])


# -- webhooks ------------------------------------------------------------------------------
def verify(header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver side, as the README documents it."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    t = int(parts["t"])
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - t) <= tolerance and hmac.compare_digest(expected, parts["v1"])


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def webhooks(proc: Proc, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{proc.url}/jobs/{job_id}/webhooks", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_webhook_signed_retried_after_500s_and_replayed(live: Live) -> None:
    live.receiver.fail["done"] = 3
    job = submit(live.a, "sleepy", {"seconds": 0.2}, callback_url=live.receiver.url("done"))
    assert "callback_url" not in job  # internal: the record keeps its documented fields
    failed = submit(live.b, "broken", {}, callback_url=live.receiver.url("failed"))
    got = live.receiver.wait("done", 4)
    assert [r["code"] for r in got] == [500, 500, 500, 200]
    record = get_job(live.a, job["id"]).json()
    for request in got:
        assert verify(request["headers"]["Webhook-Signature"], request["body"])
        assert request["headers"]["Content-Type"] == "application/json"
        assert request["headers"]["Webhook-Id"] == f"{job['id']}.1"
        assert json.loads(request["body"]) == {"event": "job.completed", "job": record}
    assert len({r["body"] for r in got}) == 1  # every retry sends the same body
    assert [int(r["headers"]["Webhook-Attempt"]) for r in got] == [1, 2, 3, 4]
    assert not verify(got[0]["headers"]["Webhook-Signature"], got[0]["body"] + b" ")
    # The 4th attempt is recorded once its answer is back, just after the receiver saw it.
    listing = wait_until(lambda: (found := webhooks(live.b, job["id"]))["deliveries"][0]["state"] == "delivered"
                         and found, 10, "the delivery to be recorded as delivered")
    # The backoff grows (WEBHOOK_RETRY_BASE_SECONDS 0.05, ×2, ±20 % jitter), by what must hold at any speed:
    # each failed attempt is due again after its delay, counted from its end, and is not tried before.
    attempts = listing["attempts"]
    for n, (attempt, request, retry) in enumerate(zip(attempts, got, got[1:]), start=1):
        nominal = 0.05 * 2 ** (n - 1)
        at, due = _epoch(attempt["at"]), _epoch(attempt["next_attempt_at"])
        assert 0.8 * nominal - 1e-5 <= due - at <= attempt["duration_ms"] / 1000 + 1.2 * nominal + 1e-3, (n, attempt)
        assert _epoch(attempts[n]["at"]) >= due - 1e-5, (n, attempts)
        assert retry["at"] - request["at"] >= 0.8 * nominal, (n, [r["at"] for r in got])
    assert attempts[-1]["next_attempt_at"] is None
    assert listing["callback_url"] == live.receiver.url("done")
    assert [(a["attempt"], a["status_code"], a["error"]) for a in listing["attempts"]] == [
        (1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 500, "HTTP 500"), (4, 200, None)]
    assert all(a["at"] and a["event"] == "job.completed" for a in listing["attempts"])
    assert listing["deliveries"][0]["state"] == "delivered" and listing["deliveries"][0]["attempts"] == 4
    # Replay: the final event again, as a new delivery.
    replay = httpx.post(f"{live.b.url}/jobs/{job['id']}/webhooks/replay", timeout=10)
    assert replay.status_code == 202 and replay.json()["replay"] is True
    again = live.receiver.wait("done", 5)[-1]
    assert json.loads(again["body"])["event"] == "job.completed"
    assert again["headers"]["Webhook-Id"] == f"{job['id']}.2" and verify(again["headers"]["Webhook-Signature"],
                                                                          again["body"])
    # The failed job's event.
    failure = live.receiver.wait("failed", 1)[0]
    body = json.loads(failure["body"])
    assert body["event"] == "job.failed" and body["job"]["id"] == failed["id"]
    assert body["job"]["error_message"] == "The input is not usable: test failure (step 'boom')"
    # Nothing to replay for a job without a callback, or one still running; 404 for an unknown job.
    plain_job = submit(live.a, "sleepy", {"seconds": 0.1})
    assert httpx.post(f"{live.a.url}/jobs/{plain_job['id']}/webhooks/replay").status_code == 409
    assert webhooks(live.a, plain_job["id"]) == {"job_id": plain_job["id"], "callback_url": None,
                                                 "deliveries": [], "attempts": []}
    assert httpx.get(f"{live.a.url}/jobs/job_doesnotexist/webhooks").status_code == 404


def test_webhook_retries_survive_a_server_restart(live: Live) -> None:
    """C is the only process delivering its webhooks: killed after two failed tries, a new C goes on."""
    live.receiver.fail["restart"] = 3
    job = submit(live.c, "sleepy", {}, callback_url=live.receiver.url("restart"))
    assert httpx.post(f"{live.c.url}/jobs/{job['id']}/cancel").status_code == 200
    deadline = time.monotonic() + 20
    while len(webhooks(live.c, job["id"])["attempts"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    live.c.stop(signal.SIGKILL)
    killed_at = time.time()
    assert len(live.receiver.got("restart")) == 2
    live.c.start()
    live.c.wait_ready()
    got = live.receiver.wait("restart", 4)
    assert [r["code"] for r in got] == [500, 500, 500, 200]
    assert all(r["at"] > killed_at for r in got[2:])
    assert all(json.loads(r["body"])["event"] == "job.cancelled" for r in got)
    listing = webhooks(live.c, job["id"])
    attempts = listing["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert attempts[0]["worker"] == attempts[1]["worker"] != attempts[2]["worker"] == attempts[3]["worker"]
    assert listing["deliveries"][0]["state"] == "delivered"


# -- the CLI -------------------------------------------------------------------------------
def ave_argv(*args: str) -> list[str]:
    return [str(AVE), *args] if AVE.exists() else [sys.executable, "-m", "cli", *args]


def cli_env(proc: Proc) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return {**env, "AVE_URL": proc.url, "TERM": "xterm-256color", "PYTHONUNBUFFERED": "1"}


def run_cli(proc: Proc, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ave_argv(*args), env=cli_env(proc), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_cli_in_pipes(live: Live, tmp_path: Path) -> None:
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"seconds": 1.2, "tag": "cli"}))
    done = run_cli(live.b, "submit", "sleepy", "--payload", str(payload), "--follow")
    assert done.returncode == 0, done.stderr
    job_id = done.stderr.split("submitted ", 1)[1].split()[0]
    assert f"{job_id} sleepy completed" in done.stdout
    assert "progress" in done.stderr and "eta" in done.stderr and "\x1b[" not in done.stderr + done.stdout
    assert "Slept 1.2s" in done.stderr
    # --json: the final record alone on stdout.
    watched = run_cli(live.a, "watch", job_id, "--json")
    assert watched.returncode == 0 and json.loads(watched.stdout) == get_job(live.a, job_id).json()
    failed = run_cli(live.a, "submit", "broken", "--follow")
    assert failed.returncode == 1 and "The input is not usable: test failure (step 'boom')" in failed.stdout
    listed = run_cli(live.a, "jobs", "--status", "completed", "--type", "sleepy", "--json")
    assert job_id in [j["id"] for j in json.loads(listed.stdout)]
    table = run_cli(live.a, "jobs", "--type", "sleepy")
    assert job_id in table.stdout and "completed" in table.stdout
    again = run_cli(live.a, "cancel", job_id)
    assert again.returncode == 1 and f"Job {job_id} is already completed" in again.stderr
    bad = run_cli(live.a, "submit", "sleepy", "--payload", str(payload), "--priority", "nope")
    assert bad.returncode == 2
    refused = run_cli(live.a, "submit", "nosuchtype")
    assert refused.returncode == 2 and "Unknown job_type" in refused.stderr
    unknown = run_cli(live.a, "watch", "job_doesnotexist")
    assert unknown.returncode == 1 and "not found" in unknown.stderr


def test_cli_under_a_terminal_with_ctrl_c(live: Live, tmp_path: Path) -> None:
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"seconds": 1}))
    code, out = run_in_pty(ave_argv("submit", "sleepy", "--payload", str(payload), "--follow"), cli_env(live.b))
    text = plain(out)
    assert code == 0, text
    assert b"\x1b[" in out and "100%" in text and "ETA" in text and "completed" in text
    # Ctrl-C asks whether to cancel; "y" cancels it; the exit code is 130.
    payload.write_text(json.dumps({"seconds": 30}))
    code, out = run_in_pty(ave_argv("submit", "sleepy", "--payload", str(payload), "--follow"), cli_env(live.b),
                           steps=[("in_progress", b"\x03"), ("[y/N]", b"y\n")])
    text = plain(out)
    assert code == 130, text
    job_id = text.split("submitted ", 1)[1].split()[0]
    assert f"{job_id}: cancelled" in text
    assert get_job(live.a, job_id).json()["status"] == "cancelled"


def test_cli_ingest_follow_and_download(live: Live, tmp_path: Path) -> None:
    from tests.mediagen import make_clip

    clip = make_clip(tmp_path / "clip.mp4", seconds=1.0, size=(160, 120))
    done = run_cli(live.a, "ingest", str(clip), "--project", "proj_cli", "--follow", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uploaded clip.mp4 as asset_" in done.stderr
    assert "ingest completed" in done.stdout
    urls = [w for w in done.stdout.split() if w.startswith(f"{live.a.url}/assets/")]
    assert any(u.endswith("/content") for u in urls) and "proxy" in done.stdout and "poster" in done.stdout
    proxy = next(line.split()[-1] for line in done.stdout.splitlines() if line.startswith("proxy"))
    asset_id = proxy.split("/assets/")[1].split("/")[0]
    out = tmp_path / "proxy.mp4"
    fetched = run_cli(live.a, "download", asset_id, "-o", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert out.read_bytes() == httpx.get(f"{live.a.url}/assets/{asset_id}/content").content
