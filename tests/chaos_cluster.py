"""The split topology of the chaos test, every part a real process on 127.0.0.1.

Debian's ``redis-server`` (append-only file, ``appendfsync always``, so a SIGKILL loses no acknowledged
write and a restart on the same port and folder reloads it), a Dask scheduler, Dask workers
(``--nworkers 1 --nthreads 1``, each with its nanny), dispatchers (``python -m scheduler`` with a short
``DISPATCHER_HEARTBEAT_TTL``) and one API server with ``RUN_DISPATCHER=false``.
Every process has its own process group and log file under the test's folder.

It also reads what the test checks: which dispatcher holds which job (Redis' ``ave:running`` hash), the
assets each job published (``ave:asset:*``) and the keys of the tasks on the Dask scheduler.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis as redis_sync
from distributed import Client

from tests.conftest import wait_until
from tests.procs import ROOT, Command, free_port

__all__ = ["FANOUT_GRAPH", "JOB_ID", "JobWatch", "Topology", "asset_ids", "epoch", "job_of", "wait_until"]

#: A fan-out whose width and task length come from the payload: long enough tasks for a worker to die in one.
FANOUT_GRAPH = """\
name: chaos_fanout
description: The chaos test's fan-out, sized by the payload.
inputs:
  items: {type: "list[int]", default: [1, 2, 3, 4, 5, 6]}
  seconds: {type: number, default: 0.8, minimum: 0, maximum: 10}
nodes:
  listed: {op: util.echo, inputs: {value: $payload.items}}
  each:
    op: util.sleep
    map: $listed
    inputs: {value: $item}
    params: {seconds: $payload.seconds}
    weight: 10
  joined: {op: util.echo, inputs: {value: {collect: $each}}}
outputs:
  joined: $joined
"""
JOB_ID = re.compile(r"job_[0-9a-f]+")


def job_of(key: str) -> str | None:
    """The job a task key belongs to (keys are ``<node>-<job id>[.a<attempt>][-<index>]``)."""
    found = JOB_ID.search(key)
    return found.group(0) if found else None


def epoch(ts: str | None) -> float | None:
    return datetime.fromisoformat(ts).timestamp() if ts else None


def asset_ids(value: Any) -> Iterator[str]:
    """The asset ids a job's ``result_payload.outputs`` names (each output file is an asset record)."""
    if isinstance(value, dict):
        if str(value.get("id", "")).startswith("asset_"):
            yield str(value["id"])
        for item in value.values():
            yield from asset_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from asset_ids(item)


class Topology:
    """Starts, restarts and stops the processes; every port is a free one on 127.0.0.1."""

    def __init__(self, tmp: Path, *, heartbeat_ttl: int, max_running_jobs: int = 3, max_attempts: int = 5) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.media = tmp / "data" / "media"
        self.media.mkdir(parents=True, exist_ok=True)
        self.redis_port, self.dask_port = free_port(), free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.dask_address = f"tcp://127.0.0.1:{self.dask_port}"
        self.heartbeat_ttl = heartbeat_ttl
        graphs = tmp / "graphs"
        graphs.mkdir(exist_ok=True)
        for name in ("ingest", "transcribe"):
            shutil.copy(ROOT / "graphs" / f"{name}.yaml", graphs)
        shutil.copy(ROOT / "tests" / "graphs" / "sleepy.yaml", graphs)
        (graphs / "chaos_fanout.yaml").write_text(FANOUT_GRAPH)
        self.env = {
            "HOST": "127.0.0.1", "REDIS_URL": self.redis_url, "DASK_SCHEDULER_ADDRESS": self.dask_address,
            "GRAPHS_DIR": str(graphs), "DATA_DIR": str(tmp / "data"), "LOG_LEVEL": "info",
            "MAX_RUNNING_JOBS": str(max_running_jobs), "MAX_JOB_ATTEMPTS": str(max_attempts),
            "DISPATCHER_HEARTBEAT_TTL": str(heartbeat_ttl), "RUN_WEBHOOKS": "false",
        }
        self.redis = self._redis_command()
        self.scheduler = Command("dask-scheduler", [
            sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
            "--port", str(self.dask_port), "--no-dashboard"],
            # One queued task per 1-thread worker, as the LocalCluster has (scheduler/dispatch/cluster.py).
            {"DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}, self.logs / "dask-scheduler.log",
            ready=lambda c: "Scheduler at" in c.tail(200))
        self.workers: dict[str, Command] = {}
        self.dispatchers: dict[str, Command] = {}
        self.server_port = free_port()
        self.server = Command("server", [sys.executable, "-m", "server"],
                              {**self.env, "RUN_DISPATCHER": "false", "PORT": str(self.server_port)},
                              self.logs / "server.log", ready=self._server_ready)
        self.url = f"http://127.0.0.1:{self.server_port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        #: (when, request, detail) of each 503 the API answered a read with
        self.unavailable: list[tuple[float, str, str]] = []
        self._dask: Client | None = None
        self._redis_client: redis_sync.Redis | None = None

    # -- processes ------------------------------------------------------------------------
    def _redis_command(self) -> Command:
        folder = self.tmp / "redis"
        folder.mkdir(exist_ok=True)
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--dir", str(folder),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"]
        return Command("redis-server", argv, {}, self.logs / "redis.log", ready=lambda c: self.redis_client().ping())

    def _server_ready(self, proc: Command) -> bool:
        diag = httpx.get(f"{self.url}/health/diagnostics", timeout=2).json()
        return bool(diag["queue"]["connected"] and diag["cluster"]["connected"])

    def add_worker(self, name: str) -> Command:
        argv = [sys.executable, "-m", "distributed.cli.dask_worker", self.dask_address, "--name", name,
                "--nworkers", "1", "--nthreads", "1", "--memory-limit", "2GiB", "--host", "127.0.0.1",
                "--no-dashboard", "--preload", "operators", "--preload", "pipelines.run.task"]
        worker = Command(name, argv, {"AVE_CORES_PER_TASK": "1"}, self.logs / f"{name}.log",
                         ready=lambda c: name in self.worker_names())
        self.workers[name] = worker.start()
        return worker

    def add_dispatcher(self, name: str) -> Command:
        dispatcher = Command(name, [sys.executable, "-m", "scheduler"], self.env,
                             self.logs / f"{name}.log", ready=lambda c: self.owner(name) is not None)
        self.dispatchers[name] = dispatcher.start()
        return dispatcher

    def start(self, workers: int = 2, dispatchers: int = 2) -> None:
        """Redis and the Dask scheduler first (the others connect to them), then the rest side by side."""
        self.redis.start()
        self.scheduler.start()
        self.redis.wait_ready(30)
        self.scheduler.wait_ready(60)
        procs = [self.add_worker(f"w{i + 1}") for i in range(workers)]
        procs += [self.add_dispatcher(f"d{i + 1}") for i in range(dispatchers)]
        procs.append(self.server.start())
        for proc in procs:
            proc.wait_ready(120)

    def owner(self, name: str) -> str | None:
        """The owner id a dispatcher logged when it started (``dispatcher <owner> running``)."""
        found = re.search(r"dispatcher (\S+) running", self.dispatchers[name].tail(400))
        return found.group(1) if found else None

    def close(self) -> None:
        if self._dask is not None:
            self._dask.close()
        self.http.close()
        if self._redis_client is not None:
            self._redis_client.close()
        # The API and the dispatchers first (they would wait on Dask and Redis going away), then the rest.
        # Each wave gets SIGTERM at once, so its processes shut down side by side; stop() then waits for
        # each, SIGKILLs what is left after its timeout, and resumes a stopped one first.
        for wave in ([self.server, *self.dispatchers.values()], [*self.workers.values(), self.scheduler, self.redis]):
            for proc in wave:
                if proc.proc is not None and proc.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        proc.send(signal.SIGCONT)
                        proc.send(signal.SIGTERM)
            for proc in wave:
                proc.stop(timeout=10)

    # -- what the test reads --------------------------------------------------------------
    def redis_client(self) -> redis_sync.Redis:
        if self._redis_client is None:
            self._redis_client = redis_sync.Redis.from_url(self.redis_url, decode_responses=True,
                                                           socket_timeout=5, socket_connect_timeout=2)
        return self._redis_client

    def dask(self) -> Client:
        if self._dask is None:
            self._dask = Client(self.dask_address, timeout=30)
        return self._dask

    def worker_names(self) -> set[str]:
        return {str(w.get("name")) for w in self.dask().scheduler_info(n_workers=-1)["workers"].values()}

    def processing(self) -> dict[str, str]:
        """Running tasks: key -> worker name."""
        # Defined here, not at module level, so cloudpickle sends the function itself: the scheduler
        # process need not import this module.
        def running(dask_scheduler: Any) -> dict[str, str]:
            return {str(key): str(ts.processing_on.name) for key, ts in dask_scheduler.tasks.items()
                    if ts.processing_on is not None}

        return dict(self.dask().run_on_scheduler(running))

    def task_keys(self) -> list[str]:
        """The key of every task the scheduler still holds (running, waiting or kept in memory)."""
        def keys(dask_scheduler: Any) -> list[str]:
            return [str(key) for key in dask_scheduler.tasks]

        return list(self.dask().run_on_scheduler(keys))

    def held_by(self, owner: str) -> set[str]:
        """Jobs the dispatcher ``owner`` holds (claimed and not finished), from Redis' ``ave:running`` hash."""
        running = self.redis_client().hgetall("ave:running")
        # The value starts with the owner (it may carry more, such as a fencing attempt, after it).
        return {job for job, value in running.items() if str(value).startswith(owner)}

    def running_jobs(self) -> dict[str, str]:
        return dict(self.redis_client().hgetall("ave:running"))

    def heartbeat_ttl_of(self, owner: str) -> int:
        return int(self.redis_client().ttl(f"ave:dispatcher:{owner}"))

    def assets_by_job(self) -> dict[str, list[dict[str, Any]]]:
        """Every asset record in Redis, grouped by the job that published it."""
        client = self.redis_client()
        found: dict[str, list[dict[str, Any]]] = {}
        for key in client.scan_iter(match="ave:asset:*", count=500):
            raw = client.get(key)
            if raw is None:
                continue
            record = json.loads(raw)
            if record.get("job_id"):
                found.setdefault(str(record["job_id"]), []).append(record)
        return found

    # -- the API ----------------------------------------------------------------------------
    def submit(self, job_type: str, payload: dict[str, Any]) -> httpx.Response:
        return self.http.post("/jobs/", params={"job_type": job_type}, json=payload, timeout=30)

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}. A 503 (Redis unreachable from the API) is noted in :attr:`unavailable` and the
        request tried again, for a few seconds: the test reports those, it does not stop at the first."""
        deadline = time.monotonic() + 10
        while True:
            response = self.http.get(f"/jobs/{job_id}")
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            self.unavailable.append((time.time(), f"GET /jobs/{job_id}", response.json().get("detail", "")))
            time.sleep(0.2)
        assert response.status_code == 200, f"{job_id}: {response.status_code} {response.text}"
        return dict(response.json())


class JobWatch:
    """Samples every accepted job's status, attempt, owner and progress from Redis a few times a second,
    in a thread, keeping each change with the time it was seen: the recovery times come from these.

    Reading Redis directly (not the API) keeps the samples cheap, and while Redis is down there is
    simply nothing to sample."""

    FIELDS = ("status", "attempts", "owner", "progress")

    def __init__(self, redis_url: str, interval: float = 0.1) -> None:
        self.client = redis_sync.Redis.from_url(redis_url, decode_responses=True, socket_timeout=2,
                                                socket_connect_timeout=1)
        self.interval = interval
        self.jobs: list[str] = []
        #: job id -> [(seen at, status, attempts, owner, progress)], one entry per change
        self.history: dict[str, list[tuple[float, str, int, str, float]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-job-watch", daemon=True)

    def start(self) -> JobWatch:
        self._thread.start()
        return self

    def add(self, job_id: str) -> None:
        with self._lock:
            self.jobs.append(job_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                jobs = list(self.jobs)
            try:
                pipe = self.client.pipeline(transaction=False)
                for job_id in jobs:
                    pipe.hmget(f"ave:job:{job_id}", self.FIELDS)
                rows = pipe.execute()
            except redis_sync.RedisError:
                continue  # Redis is down (the outage): nothing to see
            now = time.time()
            with self._lock:
                for job_id, (status, attempts, owner, progress) in zip(jobs, rows, strict=True):
                    sample = (now, str(status), int(attempts or 0), str(owner or ""), float(progress or 0))
                    seen = self.history.setdefault(job_id, [])
                    if not seen or seen[-1][1:] != sample[1:]:
                        seen.append(sample)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()

    def last(self, job_id: str) -> tuple[Any, ...]:
        """The newest (status, attempts, owner, progress) seen of the job, or ``()``."""
        with self._lock:
            seen = self.history.get(job_id)
            return seen[-1][1:] if seen else ()

    def first(self, job_id: str, after: float, test: Any) -> float | None:
        """When ``test(status, attempts, owner, progress)`` first held for the job after ``after``."""
        with self._lock:
            history = list(self.history.get(job_id, []))
        for at, *rest in history:
            if at >= after and test(*rest):
                return at
        return None
