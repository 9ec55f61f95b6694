"""Prometheus metrics whose counts live in Redis, so they are right across processes.

Every API server and dispatcher writes into the same Redis hashes, and any API server's
``GET /metrics`` reads them back: a job counted by the dispatcher of one machine shows on
the ``/metrics`` of another.

- ``ave:metrics:submitted``  job_type -> jobs created (``JobStore.create``, in its transaction)
- ``ave:metrics:finished``   ``job_type|status`` -> jobs that ended completed / failed / cancelled, counted by
                             the Lua script of the terminal transition itself (whichever process made it)
- ``ave:metrics:duration``   ``job_type|status|<le>``, ``…|+Inf`` and ``…|sum``: a histogram of the seconds from
                             ``started_at`` to the end, by the same script
- ``ave:metrics:retries``    job_type -> Dask task retries (a task that raised and was run again, ``retries:``),
                             heard from the Dask scheduler (:class:`RetryEvents`) by the job's dispatcher
- ``ave:metrics:cache``      hits, misses, corrupt, evictions, saved_seconds of the result cache (with the bytes and
                             entries of ``ave:cache:bytes`` and ``ave:cache:lru``, read at scrape time)
- ``ave:metrics:redis``      ``errors`` -> failed Redis calls. A process cannot write them while Redis is down, so
                             each keeps its own count and adds it to Redis once Redis answers again
                             (:func:`flush_redis_errors`); a scrape adds the scraping process's unflushed count.

Queue depth and running jobs are read at scrape time (``ZCARD`` of the queue, ``HLEN`` of ``ave:running``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from scheduler.records import keys

__all__ = [
    "DURATION_BUCKETS",
    "DURATION_KEY",
    "FINISHED_KEY",
    "REDIS_KEY",
    "RETRIES_KEY",
    "RETRY_TOPIC",
    "SUBMITTED_KEY",
    "RetryEvents",
    "flush_redis_errors",
    "note_redis_error",
    "pending_redis_errors",
    "render",
    "snapshot",
]

_log = logging.getLogger("scheduler.records.metrics")

SUBMITTED_KEY = keys.METRICS_SUBMITTED
FINISHED_KEY = keys.METRICS_FINISHED
DURATION_KEY = keys.METRICS_DURATION
RETRIES_KEY = keys.METRICS_RETRIES
REDIS_KEY = keys.METRICS_REDIS
RETRY_TOPIC = "ave-task-retries"

#: Upper bounds (seconds) of the job duration histogram: a noop job takes milliseconds, an ingest of a
#: feature film an hour or more.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800)
FINISHED = ("completed", "failed", "cancelled")


def lua_buckets() -> str:
    """The buckets as a Lua table literal, for the transition script."""
    return "{" + ", ".join(repr(b) for b in DURATION_BUCKETS) + "}"


# -- Redis errors: counted locally, added to Redis when it answers ----------------------------------
_errors_lock = threading.Lock()
_errors_pending = 0


def note_redis_error() -> None:
    global _errors_pending
    with _errors_lock:
        _errors_pending += 1


def pending_redis_errors() -> int:
    return _errors_pending


async def flush_redis_errors(redis: Any) -> None:
    """Add this process's uncounted Redis errors to Redis (kept for the next try if it fails)."""
    global _errors_pending
    with _errors_lock:
        count, _errors_pending = _errors_pending, 0
    if not count:
        return
    try:
        await redis.hincrby(REDIS_KEY, "errors", count)
    except Exception:  # noqa: BLE001  (still down: keep them)
        with _errors_lock:
            _errors_pending += count


# -- task retries, from the Dask scheduler ------------------------------------------------------------
try:
    from distributed.diagnostics.plugin import SchedulerPlugin as _SchedulerPlugin
except ImportError:  # pragma: no cover
    _SchedulerPlugin = object  # type: ignore[assignment,misc]


class RetryEvents(_SchedulerPlugin):  # type: ignore[misc,valid-type]
    """On the Dask scheduler: a task that raised and is run again (back to ``waiting`` on a ``task-erred``
    stimulus, which the scheduler does only while the task has ``retries`` left) is published on
    :data:`RETRY_TOPIC`.
    The dispatcher running the task's job counts it, by job type."""

    name = "ave-task-retries"
    idempotent = True

    def __init__(self) -> None:
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # A retry is the scheduler's answer to "task erred" while the task has retries left: back to
        # waiting (through released). A task re-run because its worker died is not a retry.
        if (finish == "waiting" and start in ("processing", "released") and self.scheduler is not None
                and str(kwargs.get("stimulus_id", "")).startswith("task-erred")):
            self.scheduler.log_event(RETRY_TOPIC, {"key": str(key)})


# -- scraping -----------------------------------------------------------------------------------------
async def snapshot(redis: Any, queue_key: str) -> dict[str, Any]:
    """Every count, read in one round trip; ``{"up": False}`` when Redis does not answer.

    ``redis`` answers text (``decode_responses=True``, as the Runtime opens it).
    """
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(SUBMITTED_KEY)
            pipe.hgetall(FINISHED_KEY)
            pipe.hgetall(DURATION_KEY)
            pipe.hgetall(RETRIES_KEY)
            pipe.hget(REDIS_KEY, "errors")
            pipe.zcard(queue_key)
            pipe.hlen(keys.RUNNING)
            pipe.hgetall(keys.METRICS_CACHE)
            pipe.get(keys.CACHE_BYTES)
            pipe.zcard(keys.CACHE_LRU)
            submitted, finished, duration, retries, errors, depth, running, cache, size, entries = await pipe.execute()
    except Exception:  # noqa: BLE001  (a scrape answers even when Redis is down)
        note_redis_error()
        return {"up": False, "redis_errors": pending_redis_errors()}
    return {
        "up": True,
        "submitted": {k: int(v) for k, v in submitted.items()},
        "finished": {k: int(v) for k, v in finished.items()},
        "duration": {k: float(v) for k, v in duration.items()},
        "retries": {k: int(v) for k, v in retries.items()},
        "redis_errors": int(errors or 0) + pending_redis_errors(),
        "queue_depth": int(depth),
        "running": int(running),
        "cache": {**{k: float(v) for k, v in cache.items()}, "bytes": float(size or 0), "entries": float(entries)},
    }


class _Families:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        return iter(self.families)


def render(data: dict[str, Any], job_types: Iterable[str]) -> bytes:
    """The Prometheus text format of a :func:`snapshot` (every known job type shown, 0 until it moves)."""
    from prometheus_client import generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    known = sorted(set(job_types))
    families: list[Any] = []
    up = GaugeMetricFamily("ave_redis_up", "1 when this API server reached Redis for this scrape")
    up.add_metric([], 1.0 if data.get("up") else 0.0)
    families.append(up)
    errors = CounterMetricFamily("ave_redis_errors", "Redis calls that failed (connection errors, timeouts), "
                                 "all processes")
    errors.add_metric([], float(data.get("redis_errors", 0)))
    families.append(errors)
    if not data.get("up"):
        return generate_latest(_Families(families))  # type: ignore[arg-type]

    submitted = CounterMetricFamily("ave_jobs_submitted", "Jobs created, by job type", labels=["job_type"])
    types = sorted(set(known) | set(data["submitted"]) | {k.split("|")[0] for k in data["finished"]})
    for job_type in types:
        submitted.add_metric([job_type], float(data["submitted"].get(job_type, 0)))
    families.append(submitted)
    for status in FINISHED:
        family = CounterMetricFamily(f"ave_jobs_{status}", f"Jobs that ended {status}, by job type",
                                     labels=["job_type"])
        for job_type in types:
            family.add_metric([job_type], float(data["finished"].get(f"{job_type}|{status}", 0)))
        families.append(family)

    depth = GaugeMetricFamily("ave_queue_depth", "Jobs queued, waiting for a dispatcher")
    depth.add_metric([], float(data["queue_depth"]))
    families.append(depth)
    running = GaugeMetricFamily("ave_jobs_running", "Jobs in progress on any dispatcher")
    running.add_metric([], float(data["running"]))
    families.append(running)

    histogram = HistogramMetricFamily("ave_job_duration_seconds",
                                      "Seconds from a job's start (started_at) to its end, by job type and outcome",
                                      labels=["job_type", "status"])
    series: dict[tuple[str, str], dict[str, float]] = {}
    for field, value in data["duration"].items():
        job_type, status, part = field.rsplit("|", 2)
        series.setdefault((job_type, status), {})[part] = value
    for (job_type, status), parts in sorted(series.items()):
        buckets = [(_le(b), parts.get(_lua_number(b), 0.0)) for b in DURATION_BUCKETS]
        buckets.append(("+Inf", parts.get("+Inf", 0.0)))
        histogram.add_metric([job_type, status], buckets, sum_value=parts.get("sum", 0.0))
    families.append(histogram)

    retries = CounterMetricFamily("ave_task_retries", "Dask tasks run again after raising (a node's retries:), "
                                  "by job type", labels=["job_type"])
    for job_type in sorted(set(types) | set(data["retries"])):
        retries.add_metric([job_type], float(data["retries"].get(job_type, 0)))
    families.append(retries)
    families += _cache_families(data.get("cache", {}))
    return generate_latest(_Families(families))  # type: ignore[arg-type]


def _cache_families(cache: dict[str, float]) -> list[Any]:
    """The result cache: hits, misses, corrupt entries found, evictions, seconds saved; its bytes and entries."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    families: list[Any] = []
    for name, field, text in (("hits", "hits", "Cached tasks served from the result cache"),
                              ("misses", "misses", "Cached tasks computed (not in the result cache)"),
                              ("corrupt", "corrupt", "Cache entries found corrupt (size or SHA-256) and dropped"),
                              ("evictions", "evictions", "Cache entries evicted (CACHE_MAX_BYTES, CACHE_TTL_DAYS)"),
                              ("saved_seconds", "saved_seconds", "Task seconds the cache's hits saved")):
        counter = CounterMetricFamily(f"ave_cache_{name}", text)
        counter.add_metric([], cache.get(field, 0.0))
        families.append(counter)
    for name, field, text in (("bytes", "bytes", "Bytes of the result cache's entries"),
                              ("entries", "entries", "Entries in the result cache")):
        gauge = GaugeMetricFamily(f"ave_cache_{name}", text)
        gauge.add_metric([], cache.get(field, 0.0))
        families.append(gauge)
    return families


def _le(bound: float) -> str:
    return repr(float(bound))


def _lua_number(bound: float) -> str:
    """How Lua's ``..`` writes a bucket bound into the hash field: ``1`` for 1, ``0.5`` for 0.5."""
    return str(int(bound)) if float(bound).is_integer() else repr(bound)
