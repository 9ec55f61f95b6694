"""Every Redis key (and pub/sub channel) this service uses, built in one place.

The layout is documented in one table in the README (*Architecture*, *Redis keys*). Lua scripts never build
a key themselves: each receives every key it touches in ``KEYS`` (declared, as Redis Cluster requires), built
here. A script that touches a key known only at run time (the job at the head of the queue) is preceded by a
read that learns it, and checks in the script that nothing moved meanwhile.
"""

from __future__ import annotations

__all__ = [
    "CACHE_BYTES",
    "CACHE_LRU",
    "CLIP_VERSIONS",
    "CLIP_VERSIONS_SEQ",
    "EVENTS_HUB",
    "EVENTS_PREFIX",
    "EXPIRY",
    "JOBS",
    "JOBS_INDEXED",
    "METRICS_CACHE",
    "METRICS_DURATION",
    "METRICS_FINISHED",
    "METRICS_REDIS",
    "METRICS_RETRIES",
    "METRICS_SUBMITTED",
    "PREFIX",
    "RUNNING",
    "SEQ",
    "WAKE",
    "WEBHOOKS_DUE",
    "WEBHOOK_PREFIX",
    "asset",
    "cache_claim",
    "cache_entry",
    "clip",
    "clip_version",
    "clip_version_output_jobs",
    "clip_version_outputs",
    "clip_versions_of_clip",
    "dispatcher",
    "events",
    "idempotency",
    "job",
    "job_assets",
    "job_json",
    "job_log",
    "job_webhooks",
    "jobs_in_status",
    "jobs_of_project",
    "jobs_of_type",
    "project_assets",
    "project_assets_by_time",
    "project_assets_of_kind",
    "project_clip_versions",
    "queue",
    "webhook",
]

PREFIX = "ave:"

# -- jobs and their queue ----------------------------------------------------------------
JOBS = f"{PREFIX}jobs"  # sorted set: every job id by creation time (listing)
RUNNING = f"{PREFIX}running"  # hash: in_progress job id -> the dispatcher that claimed it
WAKE = f"{PREFIX}wake"  # list a dispatcher blocks on, so a new job starts at once
SEQ = f"{PREFIX}seq"  # counter: FIFO order within a priority
EXPIRY = f"{PREFIX}jobs:expiry"  # sorted set: finished job id by the time its record expires
JOBS_INDEXED = f"{PREFIX}jobs:indexed"  # string: the status and type indexes hold every job (set once)


def jobs_of_type(job_type: str) -> str:
    """Sorted set: the job ids of one job type by creation time (listing with ``job_type=``)."""
    return f"{PREFIX}jobs:type:{job_type}"


def jobs_of_project(project_id: str) -> str:
    """Sorted set: the job ids whose payload names this project, by creation time (``project_id=``)."""
    return f"{PREFIX}jobs:project:{project_id}"


def jobs_in_status(status: str) -> str:
    """Sorted set: the job ids in one status by creation time (listing with ``status=``), kept by the scripts."""
    return f"{PREFIX}jobs:status:{status}"


def job(job_id: str) -> str:
    """Hash: the job record's fields."""
    return f"{PREFIX}job:{job_id}"


def job_log(job_id: str) -> str:
    """List: the job's ``{timestamp, message}`` entries, newest N."""
    return f"{PREFIX}job:{job_id}:log"


def job_json(job_id: str) -> str:
    """String: the record's cached JSON (GET /jobs/{id}); every change deletes it."""
    return f"{PREFIX}job:{job_id}:json"


def job_webhooks(job_id: str) -> str:
    """List: the job's webhook delivery attempts."""
    return f"{PREFIX}job:{job_id}:webhooks"


def queue(name: str) -> str:
    """Sorted set: queued job ids, score ``-priority * 2**32 + seq``."""
    return f"{PREFIX}queue:{name}"


def dispatcher(owner: str) -> str:
    """String with a TTL: a dispatcher's heartbeat."""
    return f"{PREFIX}dispatcher:{owner}"


# -- live updates and webhooks ---------------------------------------------------------------
EVENTS_PREFIX = f"{PREFIX}events:"
EVENTS_HUB = f"{EVENTS_PREFIX}_hub"  # always subscribed, so the reader always reads its socket
WEBHOOKS_DUE = f"{PREFIX}webhooks:due"  # sorted set: delivery id by due time
WEBHOOK_PREFIX = f"{PREFIX}webhook:"


def events(job_id: str) -> str:
    """Pub/sub channel: ``"<rev> <status>"`` after every change of the job."""
    return f"{EVENTS_PREFIX}{job_id}"


def webhook(delivery_id: str) -> str:
    """Hash: one webhook delivery (``<job_id>.<n>``)."""
    return f"{WEBHOOK_PREFIX}{delivery_id}"


# -- assets and clip versions ---------------------------------------------------------------
CLIP_VERSIONS = f"{PREFIX}clip_versions"  # sorted set: every clip version by creation order
CLIP_VERSIONS_SEQ = f"{PREFIX}clip_versions:seq"


def asset(asset_id: str) -> str:
    """String: the asset record's JSON."""
    return f"{PREFIX}asset:{asset_id}"


def project_assets(project_id: str) -> str:
    """Set: a project's asset ids."""
    return f"{PREFIX}project:{project_id}:assets"


def project_assets_by_time(project_id: str) -> str:
    """Sorted set: a project's asset ids by creation time (a page of the listing costs its own size)."""
    return f"{PREFIX}project:{project_id}:assets:by_time"


def project_assets_of_kind(project_id: str, kind: str) -> str:
    """Sorted set: a project's asset ids of one kind by creation time."""
    return f"{PREFIX}project:{project_id}:assets:kind:{kind}"


def job_assets(job_id: str) -> str:
    """Sorted set: the asset ids a job made, by creation time (``GET /assets/?job_id=``)."""
    return f"{PREFIX}job:{job_id}:assets"


def clip_version(cv_id: str) -> str:
    return f"{PREFIX}clip_version:{cv_id}"


def clip_version_outputs(cv_id: str, field: str) -> str:
    """List: a clip version's ``renders`` or ``exports`` entries."""
    return f"{clip_version(cv_id)}:{field}"


def clip_version_output_jobs(cv_id: str, field: str) -> str:
    """Set: the job ids already in that list (one entry per job)."""
    return f"{clip_version(cv_id)}:{field}:jobs"


def clip(clip_id: str) -> str:
    return f"{PREFIX}clip:{clip_id}"


def clip_versions_of_clip(clip_id: str) -> str:
    return f"{PREFIX}clip:{clip_id}:versions"


def project_clip_versions(project_id: str) -> str:
    return f"{PREFIX}project:{project_id}:clip_versions"


# -- idempotency and metrics ----------------------------------------------------------------
def idempotency(scope: str, route: str, digest: str) -> str:
    """String: an Idempotency-Key's state (pending, or the stored response)."""
    return f"{PREFIX}idem:{scope}:{route}:{digest}"


METRICS_SUBMITTED = f"{PREFIX}metrics:submitted"
METRICS_FINISHED = f"{PREFIX}metrics:finished"
METRICS_DURATION = f"{PREFIX}metrics:duration"
METRICS_RETRIES = f"{PREFIX}metrics:retries"
METRICS_REDIS = f"{PREFIX}metrics:redis"
METRICS_CACHE = f"{PREFIX}metrics:cache"  # hash: hits, misses, corrupt, evictions, saved_seconds


# -- the result cache (pipelines.cache; the entries' files are under cache/ in the media root) -----------------
CACHE_LRU = f"{PREFIX}cache:lru"  # sorted set: entry key by the time it was last used
CACHE_BYTES = f"{PREFIX}cache:bytes"  # string: the bytes of every committed entry


def cache_entry(key: str) -> str:
    """String: a committed cache entry's manifest (JSON: its folder, files with sizes and SHA-256, result)."""
    return f"{PREFIX}cache:entry:{key}"


def cache_claim(key: str) -> str:
    """String with a TTL: who computes this cache key now (the others wait for its entry)."""
    return f"{PREFIX}cache:claim:{key}"
