"""API benchmark: request throughput/latency of POST /jobs/ and GET /jobs/{id}, and the per-job overhead.

Run: ``.venv/bin/python bench/api.py [--requests 2000] [--concurrency 8] [--jobs 30]``

The server runs as a separate process (``python -m server``: uvicorn + the dispatcher + an embedded Redis +
a LocalCluster of DASK_WORKERS=2 processes), this process is the load generator (httpx.AsyncClient over
loopback). On a small machine both share the same cores, so the figures are a lower bound of what the
server does alone and include httpx's own client-side cost.

Phases, in order:
  1. post        POST /jobs/?job_type=noop, N requests from C concurrent clients. The dispatcher runs the
                 jobs as they arrive, so it is busy during this phase (and competes for CPU).
  2. get_busy    GET /jobs/{id} over the ids from phase 1 while the dispatcher is still draining that
                 backlog (the queue length at the start and the end is recorded).
  3. drain       wait (bounded) for the backlog to finish; the dispatcher's throughput in jobs/s comes
                 from the records' started_at/completed_at.
  4. get_idle    GET /jobs/{id} again, with the queue empty and the dispatcher idle.
  5. per_job     M sequential noop jobs: POST, then poll GET every 5 ms until completed. Reports the
                 client-observed time (POST sent -> completed seen) and the server's own timestamps
                 (created_at -> started_at -> completed_at).
Every phase has a request cap and a deadline, so the script always ends by itself.

Then the cost of issue 12's layers (``--no-cost`` skips it), on servers without a dispatcher (RUN_DISPATCHER=false,
so nothing else competes for the CPU): the same GET /jobs/{id} load against the bare baseline (bench/bare_app.py:
Litestar + one redis GET of the same record bytes), the real server with auth off and with API_TOKENS (both on the
same Redis), and POST /jobs/ with auth off and on, with a new Idempotency-Key per request and with one key replayed.
The targets are measured in turn, ``--cost-rounds`` times, and each one's best round is kept. Last, bench/api_profile.py
(``--no-profile`` skips it) profiles one GET /jobs/{id} in-process and says where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH_DIR,
    CpuMeter,
    ServerProcess,
    machine_info,
    parse_ts,
    print_table,
    record_durations,
    submit,
    summarize,
    wait_job,
    warn_if_loaded,
    write_json,
)

NOOP_GRAPH = BENCH_DIR / "graphs" / "noop.yaml"


async def load(client: httpx.AsyncClient, make_request: Any, *, total: int, concurrency: int,
               deadline_s: float, expect: int) -> dict[str, Any]:
    """``total`` requests from ``concurrency`` workers; ``make_request(i)`` returns a coroutine -> Response."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    bodies: list[Any] = [None] * total
    counter = iter(range(total))
    stop_at = time.perf_counter() + deadline_s

    async def worker() -> None:
        for i in counter:
            if time.perf_counter() > stop_at:
                return
            t0 = time.perf_counter()
            try:
                response = await make_request(i)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)
            if response.status_code != expect:
                key = f"HTTP {response.status_code}"
                errors[key] = errors.get(key, 0) + 1
            else:
                bodies[i] = response.json()

    t_start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t_start
    done = len(latencies)
    return {
        "requests": done,
        "concurrency": concurrency,
        "elapsed_s": elapsed,
        "throughput_rps": done / elapsed if elapsed else 0.0,
        "latency_ms": summarize(latencies),
        "errors": errors,
        "hit_deadline": done < total,
        "_bodies": bodies,
    }


async def queue_length(client: httpx.AsyncClient) -> int:
    """Queued jobs now (the list endpoint caps at 500, so '500' means 'at least 500')."""
    response = await client.get("/jobs/", params={"status": "queued", "limit": 500})
    response.raise_for_status()
    return len(response.json())


async def run(args: argparse.Namespace, server: ServerProcess) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4)
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as client:
        # Warm-up: first requests pay for imports, Redis script loading, Dask task code shipping.
        for _ in range(5):
            job = await submit(client, "noop", {"value": "warm"})
            if not args.no_dispatcher:
                await wait_job(client, job["id"], timeout=60)
        for _ in range(50):
            await client.get("/health/")

        # 1. POST throughput.
        with CpuMeter(server) as cpu_post:
            post = await load(
                client, lambda i: client.post("/jobs/", params={"job_type": "noop"}, json={"value": f"v{i}"}),
                total=args.requests, concurrency=args.concurrency, deadline_s=args.phase_deadline, expect=202)
        post["cpu"] = cpu_post.result
        ids = [b["id"] for b in post.pop("_bodies") if b]
        post["dispatcher"] = "busy (running the jobs being posted)"
        results["post"] = post
        if not ids:
            raise RuntimeError(f"no job was created: {post['errors']}")
        print(f"[bench] post: {post['requests']} in {post['elapsed_s']:.1f}s", flush=True)

        if args.no_dispatcher:
            # API alone: nothing runs the jobs, so there is no backlog to drain and no per-job phase.
            post["dispatcher"] = "off (RUN_DISPATCHER=false)"
            with CpuMeter(server) as cpu_get_idle:
                get_idle = await load(client, lambda i: client.get(f"/jobs/{ids[i % len(ids)]}"),
                                      total=args.requests, concurrency=args.concurrency,
                                      deadline_s=args.phase_deadline, expect=200)
            get_idle.pop("_bodies")
            get_idle["cpu"] = cpu_get_idle.result
            get_idle["dispatcher"] = "off (RUN_DISPATCHER=false)"
            results["get_idle"] = get_idle
            return results

        # 2. GET while the dispatcher drains the backlog.
        t_busy0 = time.time()
        with CpuMeter(server) as cpu_get_busy:
            get_busy = await load(client, lambda i: client.get(f"/jobs/{ids[i % len(ids)]}"),
                                  total=args.requests, concurrency=args.concurrency,
                                  deadline_s=args.phase_deadline, expect=200)
        get_busy["cpu"] = cpu_get_busy.result
        get_busy.pop("_bodies")
        t_busy1 = time.time()
        get_busy["dispatcher"] = "busy (draining the POST backlog)"
        results["get_busy"] = get_busy
        print(f"[bench] get_busy: {get_busy['requests']} in {get_busy['elapsed_s']:.1f}s", flush=True)

        # 3. Drain: wait until the last posted job (FIFO, same priority) is finished.
        t0 = time.perf_counter()
        t_drain0 = time.time()
        drained = True
        cpu_drain = CpuMeter(server).__enter__()
        try:
            await wait_job(client, ids[-1], interval=0.1, timeout=args.drain_timeout)
            while await queue_length(client):
                if time.perf_counter() - t0 > args.drain_timeout:
                    raise TimeoutError
                await asyncio.sleep(0.1)
        except TimeoutError:
            drained = False
        cpu_drain.__exit__(None, None, None)
        t_drain1 = time.time()
        results["drain"] = {"waited_s": time.perf_counter() - t0, "drained": drained, "cpu": cpu_drain.result}
        print(f"[bench] drain: waited {results['drain']['waited_s']:.1f}s, drained={drained}", flush=True)

        # 4. GET with the dispatcher idle; keeps the records for the dispatcher throughput.
        with CpuMeter(server) as cpu_get_idle:
            get_idle = await load(client, lambda i: client.get(f"/jobs/{ids[i % len(ids)]}"),
                                  total=args.requests, concurrency=args.concurrency,
                                  deadline_s=args.phase_deadline, expect=200)
        get_idle["cpu"] = cpu_get_idle.result
        records = [b for b in get_idle.pop("_bodies") if b]
        get_idle["dispatcher"] = "idle (queue empty)" if drained else "NOT idle (drain timed out)"
        results["get_idle"] = get_idle
        print(f"[bench] get_idle: {get_idle['requests']} in {get_idle['elapsed_s']:.1f}s", flush=True)

        by_id = {r["id"]: r for r in records}
        finished = [r for r in by_id.values() if r["status"] == "completed"]
        statuses: dict[str, int] = {}
        for r in by_id.values():
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        durations = [record_durations(r) for r in finished]
        starts = [r["started_at"] for r in finished]
        ends = [r["completed_at"] for r in finished]
        backlog: dict[str, Any] = {"jobs": len(by_id), "statuses": statuses}
        if finished:
            span = max(map(parse_ts, ends)) - min(map(parse_ts, starts))  # type: ignore[type-var]
            backlog.update({
                "span_s": span,
                "dispatcher_jobs_per_s": len(finished) / span if span else None,
                "server_running_ms": summarize([d["running_s"] for d in durations if d["running_s"] is not None]),
                "server_queued_ms": summarize([d["queued_s"] for d in durations if d["queued_s"] is not None]),
            })
        results["backlog"] = backlog

        def waiting_at(moment: float) -> int:
            """Jobs created but not yet started at ``moment`` (client and server share the clock)."""
            return sum(1 for r in by_id.values()
                       if parse_ts(r["created_at"]) <= moment  # type: ignore[operator]
                       and (not r["started_at"] or parse_ts(r["started_at"]) > moment))  # type: ignore[operator]

        # Dispatcher cost per job: CPU used while only the dispatcher worked (the drain wait, polled every
        # 100 ms), over the jobs that completed in that window.
        drained_jobs = sum(1 for r in finished if t_drain0 <= parse_ts(r["completed_at"]) <= t_drain1)  # type: ignore[operator]
        if drained_jobs:
            c = results["drain"]["cpu"]
            results["drain"].update({
                "jobs_completed": drained_jobs,
                "server_main_cpu_ms_per_job": c["server_main_cpu_s"] / drained_jobs * 1000,
                "server_children_cpu_ms_per_job": c["server_children_cpu_s"] / drained_jobs * 1000,
            })
        get_busy["queued_at_start"] = waiting_at(t_busy0)
        get_busy["queued_at_end"] = waiting_at(t_busy1)

        # 5. Sequential per-job overhead.
        client_s: list[float] = []
        server_total: list[float] = []
        server_queued: list[float] = []
        server_running: list[float] = []
        post_s: list[float] = []
        polls: list[int] = []
        not_completed: dict[str, int] = {}
        seq_deadline = time.perf_counter() + args.phase_deadline
        for i in range(args.jobs):
            if time.perf_counter() > seq_deadline:
                break
            t_send = time.perf_counter()
            job = await submit(client, "noop", {"value": f"seq{i}"})
            post_s.append(time.perf_counter() - t_send)
            n = 0
            while True:
                n += 1
                record = (await client.get(f"/jobs/{job['id']}")).json()
                if record["status"] in ("completed", "failed", "cancelled"):
                    break
                if time.perf_counter() - t_send > 30:
                    break
                await asyncio.sleep(0.005)
            client_s.append(time.perf_counter() - t_send)
            polls.append(n)
            if record["status"] != "completed":
                not_completed[record["status"]] = not_completed.get(record["status"], 0) + 1
                continue
            d = record_durations(record)
            server_total.append(d["total_s"])  # type: ignore[arg-type]
            server_queued.append(d["queued_s"])  # type: ignore[arg-type]
            server_running.append(d["running_s"])  # type: ignore[arg-type]
        results["per_job"] = {
            "jobs": len(client_s),
            "poll_interval_ms": 5,
            "client_post_to_completed_ms": summarize(client_s),
            "client_post_only_ms": summarize(post_s),
            "server_created_to_completed_ms": summarize(server_total),
            "server_created_to_started_ms": summarize(server_queued),
            "server_started_to_completed_ms": summarize(server_running),
            "polls_per_job_mean": sum(polls) / len(polls) if polls else None,
            "not_completed": not_completed,
        }
    return results


class BareProcess:
    """bench/bare_app.py in a subprocess on a free port; CPU seconds like ServerProcess.cpu_seconds()."""

    def __init__(self, redis_url: str) -> None:
        from common import free_port

        self.port = free_port()
        self.redis_url = redis_url
        self.proc: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "bare_app.py"),
                                      "--port", str(self.port), "--redis-url", self.redis_url],
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/health/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("bare app not ready")

    def cpu_seconds(self) -> dict[str, float]:
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return {"server_main": t.user + t.system, "server_children": 0.0}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


async def run_costs(args: argparse.Namespace) -> dict[str, Any]:
    """Auth off/on and Idempotency-Key against the bare baseline (see the module's docstring)."""
    import redis as redis_sync

    token = "bench-token-7f3a9c51"
    env = {"RUN_DISPATCHER": "false", "RUN_WEBHOOKS": "false"}
    off = ServerProcess(extra_graphs=[NOOP_GRAPH], dask_workers=1, env=env)
    servers: list[Any] = [off]
    try:
        off.start()
        diag = off.wait_ready()
        redis_url = f"redis://{diag['queue']['broker_url']}"
        on = ServerProcess(extra_graphs=[NOOP_GRAPH], dask_workers=1,
                           env={**env, "REDIS_URL": redis_url, "API_TOKENS": token,
                                "DASK_SCHEDULER_ADDRESS": diag["cluster"]["scheduler_address"]})
        servers.append(on)
        on.start()
        bare = BareProcess(redis_url)
        servers.append(bare)
        bare.start()
        print(f"[bench] cost: auth off {off.base_url}, auth on {on.base_url}, bare {bare.base_url}", flush=True)
        limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4)
        clients = {
            "bare": httpx.AsyncClient(base_url=bare.base_url, timeout=30, limits=limits),
            "off": httpx.AsyncClient(base_url=off.base_url, timeout=30, limits=limits),
            "on": httpx.AsyncClient(base_url=on.base_url, timeout=30, limits=limits,
                                    headers={"Authorization": f"Bearer {token}"}),
        }
        procs = {"bare": bare, "off": off, "on": on}
        ids = []
        for i in range(200):
            response = await clients["off"].post("/v1/jobs/", params={"job_type": "noop"}, json={"value": f"g{i}"})
            ids.append(response.json()["id"])
        with redis_sync.Redis.from_url(redis_url) as r:
            for job_id in ids:
                r.set(f"bare:job:{job_id}", (await clients["off"].get(f"/v1/jobs/{job_id}")).content)
        n = len(ids)
        round_no = 0
        targets: list[tuple[str, str, Any, int]] = [
            ("GET /jobs/{id}: bare Litestar + redis GET", "bare", lambda c, i: c.get(f"/jobs/{ids[i % n]}"), 200),
            ("GET /v1/jobs/{id}: auth off", "off", lambda c, i: c.get(f"/v1/jobs/{ids[i % n]}"), 200),
            ("GET /v1/jobs/{id}: auth on", "on", lambda c, i: c.get(f"/v1/jobs/{ids[i % n]}"), 200),
            ("POST /v1/jobs/: auth off", "off",
             lambda c, i: c.post("/v1/jobs/", params={"job_type": "noop"}, json={"value": f"p{i}"}), 202),
            ("POST /v1/jobs/: auth on", "on",
             lambda c, i: c.post("/v1/jobs/", params={"job_type": "noop"}, json={"value": f"p{i}"}), 202),
            ("POST /v1/jobs/: auth off, a new Idempotency-Key each", "off",
             lambda c, i: c.post("/v1/jobs/", params={"job_type": "noop"}, json={"value": f"k{i}"},
                                 headers={"Idempotency-Key": f"key-{round_no}-{i}"}), 202),
            ("POST /v1/jobs/: auth off, one Idempotency-Key replayed", "off",
             lambda c, i: c.post("/v1/jobs/", params={"job_type": "noop"}, json={"value": "same"},
                                 headers={"Idempotency-Key": "replayed-key"}), 202),
        ]
        best: dict[str, dict[str, Any]] = {}
        for round_no in range(args.cost_rounds):
            for label, which, make, expect in targets:
                client = clients[which]
                with CpuMeter(procs[which]) as cpu:
                    result = await load(client, lambda i, c=client, m=make: m(c, i), total=args.cost_requests,
                                        concurrency=args.concurrency, deadline_s=args.phase_deadline, expect=expect)
                result.pop("_bodies")
                result["cpu"] = cpu.result
                result["server_cpu_ms_per_request"] = (
                    (cpu.result["server_main_cpu_s"] + cpu.result["server_children_cpu_s"])
                    / max(1, result["requests"]) * 1000)
                result["round"] = round_no + 1
                if label not in best or result["throughput_rps"] > best[label]["throughput_rps"]:
                    best[label] = result
                print(f"[bench] cost round {round_no + 1}: {label}: {result['throughput_rps']:.0f} req/s", flush=True)
        for client in clients.values():
            await client.aclose()
        bare_rps = best[targets[0][0]]["throughput_rps"]
        post_rps = best[targets[3][0]]["throughput_rps"]
        for label, entry in best.items():
            entry["ratio"] = entry["throughput_rps"] / (bare_rps if label.startswith("GET") else post_rps)
        return {"rounds": args.cost_rounds, "requests": args.cost_requests, "concurrency": args.concurrency,
                "targets": best}
    finally:
        for server in reversed(servers):
            server.stop()


def report_costs(cost: dict[str, Any]) -> None:
    print(f"\nthe cost of auth and Idempotency-Key (no dispatcher; best of {cost['rounds']} rounds; ratio: to the "
          "bare GET for GETs, to POST with auth off for POSTs):")
    rows = []
    for label, r in cost["targets"].items():
        lat = r["latency_ms"]
        rows.append([label, r["requests"], r["throughput_rps"], r["ratio"], lat.get("p50", float("nan")),
                     lat.get("p99", float("nan")), r["server_cpu_ms_per_request"], sum(r["errors"].values())])
    print_table(rows, ["request", "n", "req/s", "ratio", "p50 ms", "p99 ms", "server cpu ms/req", "errors"])


def report(results: dict[str, Any]) -> None:
    print()
    rows = []
    idle_label = "GET /jobs/{id} (no dispatcher)" if "per_job" not in results else "GET /jobs/{id} (dispatcher idle)"
    for key, label in (("post", "POST /jobs/?job_type=noop"), ("get_busy", "GET /jobs/{id} (dispatcher busy)"),
                       ("get_idle", idle_label)):
        if key not in results:
            continue
        r = results[key]
        lat = r["latency_ms"]
        cpu = r.get("cpu", {})
        per_req = 1000 / r["requests"] if r["requests"] else float("nan")
        rows.append([label, r["requests"], r["concurrency"], r["throughput_rps"], lat.get("p50", float("nan")),
                     lat.get("p99", float("nan")), lat.get("max", float("nan")), sum(r["errors"].values()),
                     cpu.get("server_main_cpu_s", float("nan")) * per_req,
                     cpu.get("server_children_cpu_s", float("nan")) * per_req,
                     cpu.get("client_cpu_s", float("nan")) * per_req])
    print_table(rows, ["request", "n", "conc", "req/s", "p50 ms", "p99 ms", "max ms", "errors",
                       "srv cpu ms/req", "dask+redis cpu ms/req", "client cpu ms/req"])
    if "per_job" not in results:
        return
    print()
    pj = results["per_job"]
    rows = []
    for key, label in (("client_post_to_completed_ms", "client: POST sent -> completed seen"),
                       ("client_post_only_ms", "client: POST round trip"),
                       ("server_created_to_completed_ms", "server: created_at -> completed_at"),
                       ("server_created_to_started_ms", "server: created_at -> started_at"),
                       ("server_started_to_completed_ms", "server: started_at -> completed_at")):
        s = pj[key]
        rows.append([label, s.get("n", 0), s.get("p50", float("nan")), s.get("p99", float("nan")),
                     s.get("mean", float("nan")), s.get("max", float("nan"))])
    print(f"per-job overhead, one util.echo node, {pj['jobs']} sequential jobs, polling every 5 ms:")
    print_table(rows, ["measure", "n", "p50 ms", "p99 ms", "mean ms", "max ms"])
    b = results["backlog"]
    print()
    gb = results["get_busy"]
    print(f"get_busy ran with {gb['queued_at_start']} -> {gb['queued_at_end']} jobs still queued (start -> end)")
    print(f"backlog of {b['jobs']} POSTed jobs: {b['statuses']}; dispatcher throughput "
          f"{b.get('dispatcher_jobs_per_s') or float('nan'):.1f} jobs/s over {b.get('span_s') or float('nan'):.1f}s "
          f"(drain wait after get_busy: {results['drain']['waited_s']:.1f}s)")
    d = results["drain"]
    if d.get("jobs_completed"):
        print(f"while draining ({d['jobs_completed']} jobs in {d['waited_s']:.1f}s): server main process "
              f"{d['server_main_cpu_ms_per_job']:.2f} CPU ms/job, Dask workers + redis "
              f"{d['server_children_cpu_ms_per_job']:.2f} CPU ms/job")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per request kind")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--jobs", type=int, default=30, help="sequential jobs for the per-job overhead")
    parser.add_argument("--phase-deadline", type=float, default=30.0, help="max seconds of each phase")
    parser.add_argument("--drain-timeout", type=float, default=90.0, help="max seconds to wait for the backlog")
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--no-dispatcher", action="store_true",
                        help="server with RUN_DISPATCHER=false: POST and GET only, the API without the dispatcher's "
                             "load; writes bench/out/api_nodispatcher.json")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the server's temp folder (and log)")
    parser.add_argument("--no-cost", action="store_true", help="skip the auth / Idempotency-Key / bare baseline phases")
    parser.add_argument("--cost-requests", type=int, default=1500, help="requests per cost target and round")
    parser.add_argument("--cost-rounds", type=int, default=2, help="rounds of the cost targets (best kept)")
    parser.add_argument("--no-profile", action="store_true", help="skip bench/api_profile.py")
    args = parser.parse_args()

    t_all = time.perf_counter()
    load_before = os.getloadavg()
    env = {"RUN_DISPATCHER": "false"} if args.no_dispatcher else {}
    server = ServerProcess(extra_graphs=[NOOP_GRAPH], dask_workers=args.dask_workers, keep_tmp=args.keep_tmp,
                           env=env)
    exit_code: int | None = None
    results: dict[str, Any] = {}
    try:
        server.start()
        print(f"[bench] server ready at {server.base_url} in {server.startup_s:.1f}s (log: {server.log_path})",
              flush=True)
        results = asyncio.run(run(args, server))
    finally:
        exit_code = server.stop()
    if not args.no_cost:
        results["cost"] = asyncio.run(run_costs(args))
    if not args.no_profile:
        import subprocess

        subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "api_profile.py")], check=False)
        profile = Path(__file__).resolve().parent / "out" / "api_profile.json"
        if profile.exists():
            import json

            results["profile"] = json.loads(profile.read_text())
    data = {
        "benchmark": "api",
        "machine": machine_info(),
        "server": {"env": {"DASK_WORKERS": args.dask_workers, **env}, "startup_s": server.startup_s,
                   "exit_code": exit_code},
        "args": vars(args),
        "wall_s": time.perf_counter() - t_all,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        **results,
    }
    report(results)
    if "cost" in results:
        report_costs(results["cost"])
    path = write_json("api_nodispatcher.json" if args.no_dispatcher else "api.json", data)
    warn_if_loaded([load_before[0], data["loadavg_after"][0]], "the figures are pessimistic and noisy")
    print(f"\nserver exit code {exit_code}; total {data['wall_s']:.1f}s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
