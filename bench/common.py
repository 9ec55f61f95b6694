"""Helpers shared by the benchmarks: run the server as a subprocess, wait for it, poll jobs, summarise timings.

Typical use::

    with ServerProcess(extra_graphs=[BENCH_DIR / "graphs" / "noop.yaml"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            record = await submit_and_wait(client, "noop", {"value": "x"})
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
PYTHON = sys.executable
TERMINAL = ("completed", "failed", "cancelled")


# -- processes -------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m server`` in a separate process on a free loopback port, with its data in a temp folder.

    The graphs folder is a temp copy of ``graphs/*.yaml`` plus ``extra_graphs``. ``env`` overrides or adds
    environment variables (e.g. ``{"MAX_RUNNING_JOBS": "8"}``). Server output goes to ``<tmp>/server.log``;
    ``keep_tmp=True`` keeps the temp folder for inspection.
    """

    def __init__(self, *, extra_graphs: Iterable[Path] = (), env: dict[str, str] | None = None,
                 dask_workers: int = 2, startup_timeout: float = 120.0, keep_tmp: bool = False,
                 log_to_console: bool = False) -> None:
        self.extra_graphs = [Path(p) for p in extra_graphs]
        self.extra_env = dict(env or {})
        self.dask_workers = dask_workers
        self.startup_timeout = startup_timeout
        self.keep_tmp = keep_tmp
        self.log_to_console = log_to_console
        self.host = "127.0.0.1"
        self.port = 0
        self.tmp: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "data"

    @property
    def media_root(self) -> Path:
        return self.data_dir / "media"

    def add_media(self, *paths: Path) -> None:
        """Put files under the server's media root: hard links when possible (no copy of big sources)."""
        self.media_root.mkdir(parents=True, exist_ok=True)
        for path in paths:
            try:
                os.link(path, self.media_root / path.name)
            except OSError:
                shutil.copy(path, self.media_root / path.name)

    @property
    def log_path(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "server.log"

    def start(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
        graphs = self.tmp / "graphs"
        graphs.mkdir()
        for path in sorted((ROOT / "graphs").glob("*.yaml")):
            shutil.copy(path, graphs / path.name)
        for path in self.extra_graphs:
            shutil.copy(path, graphs / path.name)
        self.data_dir.mkdir()
        self.port = free_port(self.host)
        env = dict(os.environ)
        env.update({
            "PORT": str(self.port),
            "HOST": self.host,
            "DATA_DIR": str(self.data_dir),
            "GRAPHS_DIR": str(graphs),
            "DASHBOARD_ADDRESS": ":0",
            "DASK_WORKERS": str(self.dask_workers),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        self._log_file = None if self.log_to_console else open(self.log_path, "wb")  # noqa: SIM115
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "server"], cwd=ROOT, env=env,
            stdout=self._log_file, stderr=subprocess.STDOUT if self._log_file else None,
            start_new_session=True,  # our Ctrl-C does not reach it; stop() sends SIGINT itself
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - t0

    def wait_ready(self) -> dict[str, Any]:
        """Wait for ``GET /health/`` and then for ``/health/diagnostics`` to say Redis and the cluster are connected."""
        deadline = time.monotonic() + self.startup_timeout
        last: Any = None
        with httpx.Client(base_url=self.base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    if client.get("/health/").status_code == 200:
                        diag = client.get("/health/diagnostics").json()
                        last = diag
                        if diag.get("queue", {}).get("connected") and diag.get("cluster", {}).get("connected"):
                            return diag
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.1)
        raise TimeoutError(f"server not ready in {self.startup_timeout}s; last: {last}\n{self.log_tail()}")

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with code {self.proc.returncode}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AssertionError):
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT, wait up to ``timeout``; then SIGTERM, then SIGKILL the whole process group."""
        code: int | None = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    print(f"[bench] server did not stop in {timeout}s after SIGINT; SIGTERM", file=sys.stderr)
                    self._signal_group(signal.SIGTERM)
                    try:
                        self.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        self._signal_group(signal.SIGKILL)
                        self.proc.wait(5)
            code = self.proc.returncode
            # Stray children (Dask workers, redis-server) of the server's own session, if any survived.
            self._signal_group(signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tmp is not None and not self.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return code

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user+system) so far of the server process and of its live descendants
        (Dask scheduler/workers, redis-server); descendants that already exited are not counted."""
        import psutil

        assert self.proc is not None
        out = {"server_main": 0.0, "server_children": 0.0}
        try:
            main = psutil.Process(self.proc.pid)
            t = main.cpu_times()
            out["server_main"] = t.user + t.system
            for child in main.children(recursive=True):
                try:
                    c = child.cpu_times()
                    out["server_children"] += c.user + c.system
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        return out

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- jobs ----------------------------------------------------------------------------
async def submit(client: httpx.AsyncClient, job_type: str, payload: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = await client.post("/jobs/", params={"job_type": job_type, **params}, json=payload)
    if response.status_code != 202:
        raise RuntimeError(f"POST /jobs/?job_type={job_type}: {response.status_code} {response.text[:500]}")
    return response.json()


async def wait_job(client: httpx.AsyncClient, job_id: str, *, interval: float = 0.005,
                   timeout: float = 120.0) -> dict[str, Any]:
    """Poll ``GET /jobs/{id}`` every ``interval`` seconds until a terminal status."""
    deadline = time.monotonic() + timeout
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/jobs/{job_id}")
        response.raise_for_status()
        record = response.json()
        if record["status"] in TERMINAL:
            return record
        await asyncio.sleep(interval)
    raise TimeoutError(f"job {job_id} not finished in {timeout}s; last: {record}")


async def submit_and_wait(client: httpx.AsyncClient, job_type: str, payload: dict[str, Any], *,
                          interval: float = 0.005, timeout: float = 120.0, **params: Any) -> dict[str, Any]:
    job = await submit(client, job_type, payload, **params)
    return await wait_job(client, job["id"], interval=interval, timeout=timeout)


def parse_ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def record_durations(record: dict[str, Any]) -> dict[str, float | None]:
    """Server-side durations of a job record, in seconds: queue wait, run time and total."""
    created, started, done = (parse_ts(record.get(k)) for k in ("created_at", "started_at", "completed_at"))
    return {
        "queued_s": started - created if started and created else None,
        "running_s": done - started if done and started else None,
        "total_s": done - created if done and created else None,
    }


# -- statistics ------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float], *, scale: float = 1000.0) -> dict[str, float]:
    """n, mean, p50, p90, p99, min, max; values in seconds, reported ×``scale`` (ms by default)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values) * scale,
        "p50": percentile(values, 50) * scale,
        "p90": percentile(values, 90) * scale,
        "p99": percentile(values, 99) * scale,
        "min": min(values) * scale,
        "max": max(values) * scale,
    }


def write_json(name: str, data: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


class CpuMeter:
    """CPU seconds used during a block by this process (the load generator) and by the server's process tree."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.result: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._wall = time.perf_counter()
        self._client = time.process_time()
        self._server = self.server.cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        after = self.server.cpu_seconds()
        self.result = {
            "wall_s": wall,
            "client_cpu_s": time.process_time() - self._client,
            **{f"{k}_cpu_s": after[k] - self._server[k] for k in after},
        }


def machine_info() -> dict[str, Any]:
    import platform

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def warn_if_loaded(loads: Iterable[float], what: str = "compare the contenders only within this run") -> None:
    """Print a warning when a 1-minute load average seen during the runs exceeds the CPU count."""
    cpus = os.cpu_count() or 1
    peak = max(loads, default=0.0)
    if peak > cpus:
        print(f"\nWARNING: 1-minute load average up to {peak:.1f} on {cpus} CPUs during the runs: other "
              f"processes competed for the CPU; {what}.")
