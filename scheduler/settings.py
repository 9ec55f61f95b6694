"""Settings, from environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["APP_NAME", "QUEUE_NAME", "Settings"]

APP_NAME = "AI Video Editor Backend"
QUEUE_NAME = "ai-video-editor-jobs"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting of the service; each field reads the environment variable of its name."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    host: str = Field("0.0.0.0", description="Address the HTTP server binds")
    port: int = Field(8000, description="HTTP port")
    app_env: str = Field("development", description="Reported by /health/ as 'environment'")
    redis_url: str | None = Field(None, description="Existing Redis, e.g. redis://host:6379/0; unset: embedded Redis")
    dask_scheduler_address: str | None = Field(
        None, description="Existing Dask scheduler, e.g. tcp://host:8786; unset: a LocalCluster"
    )
    data_dir: Path = Field(Path("./data"), description="Embedded Redis data and the default media root")
    media_root: str | None = Field(None, description="Local folder or fsspec URL for media; default $DATA_DIR/media")
    media_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description='JSON object of fsspec options for a remote MEDIA_ROOT, e.g. {"endpoint_url": "http://minio:9000"}',
    )
    graphs_dir: Path = Field(_PROJECT_ROOT / "graphs", description="Folder of job graphs (<job_type>.yaml)")
    max_running_jobs: int = Field(4, ge=1, description="Jobs one dispatcher runs at once")
    dispatcher_heartbeat_ttl: int = Field(
        15, ge=2, le=3600,
        description="Seconds a dispatcher that stops heartbeating keeps its jobs before another re-queues them")
    max_job_attempts: int = Field(3, ge=1, description="Tries of a job interrupted by a lost dispatcher")
    max_job_seconds: float | None = Field(
        24 * 3600, gt=0, description="Longest a job may run before it fails (a graph's max_job_seconds overrides it)")
    max_tasks_per_node: int = Field(
        1000, ge=1, description="Most tasks one node's fan-out may start (a graph's max_tasks_per_node, or a node's "
        "max_tasks, overrides it); a longer list fails the job before any is submitted")
    hung_task_grace_seconds: float = Field(
        30.0, ge=0, description="Seconds a task still running after its job failed at a deadline (MAX_JOB_SECONDS, "
        "a node's timeout:) may keep its worker's thread; then that worker is restarted through its nanny")
    run_dispatcher: bool = Field(True, description="Run the dispatcher inside the server process")
    dask_workers: int | None = Field(None, ge=1, description="LocalCluster worker processes (default: CPU count)")
    dask_threads_per_worker: int = Field(1, ge=1, description="Threads per LocalCluster worker")
    dask_memory_limit: str = Field("auto", description="Memory limit per LocalCluster worker")
    dask_worker_saturation: float = Field(
        1.0, gt=0, description="Queued tasks a LocalCluster worker gets per thread (Dask's default is 1.1)"
    )
    dask_worker_profile: bool = Field(
        False, description="Dask's statistical profiler in LocalCluster workers (costs ~1% of their CPU)"
    )
    dashboard_address: str = Field(":8787", description="LocalCluster dashboard (another port if busy)")
    embedded_redis_port: int = Field(0, ge=0, description="Port of the embedded Redis on 127.0.0.1 (0: any free)")
    max_upload_bytes: int = Field(20 * 1024**3, ge=1, description="Largest accepted upload, in bytes")
    job_log_limit: int = Field(300, ge=10, description="Newest log entries kept per job")
    job_ttl_days: float = Field(
        30, ge=0, description="Days a finished job (completed, failed, cancelled) and its log are kept; 0: forever. "
                              "Fractions are allowed (0.5: twelve hours)")
    cache_enabled: bool = Field(
        True, description="Serve and keep the results of graph nodes marked cache: true (a content-addressed cache "
                          "shared by every job); false: every task runs")
    cache_max_bytes: int = Field(
        20 * 1024**3, ge=0, description="Size cap of the result cache (entries under cache/ in the media root); "
                                        "past it the least recently used entries are evicted")
    cache_ttl_days: float = Field(
        30, ge=0, description="Days an unused cache entry is kept; 0: until evicted by size")
    log_level: str = Field("info", pattern="(?i)^(debug|info|warning|error|critical)$",
                           description="Level of the server's and dispatcher's logs")
    job_log_tracebacks: bool = Field(
        False, description="Also write a failed task's traceback into the job's log (always with LOG_LEVEL=debug); "
                           "the server's log always has it, with the job id")
    max_render_seconds: float = Field(3 * 3600, gt=0, description="Longest timeline a render job accepts, in seconds")
    access_log: bool = Field(False, description="Log every HTTP request (costs ~10% of peak request rate)")
    # -- live updates and webhooks ------------------------------------------------------
    sse_heartbeat_seconds: float = Field(15.0, gt=0, description="Seconds between SSE heartbeat comments")
    live_client_queue: int = Field(
        16, ge=1, description="Messages queued per WebSocket/SSE client; a full queue collapses into the newest record"
    )
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 key of the Webhook-Signature header")
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="Tries of one webhook delivery")
    webhook_retry_base_seconds: float = Field(5.0, gt=0, description="Delay before the first retry of a webhook")
    webhook_retry_factor: float = Field(5.0, ge=1, description="Each next retry delay is this many times the last")
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one webhook POST")
    webhook_allow_private: bool = Field(
        False, description="Allow callback URLs that resolve to loopback, link-local or private addresses"
    )
    run_webhooks: bool = Field(True, description="Deliver due webhooks from this process")
    # -- limits, auth, idempotency, metrics --------------------------------------------------
    max_json_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest JSON request body (every route but the upload); past it: 413"
    )
    max_payload_string: int = Field(
        10_000, ge=1, description="Longest string anywhere in a job payload or timeline, where a graph declares no max_length"
    )
    max_payload_items: int = Field(
        10_000, ge=1, description="Most items of a list (or keys of an object) in a payload, where a graph declares no max_items"
    )
    max_payload_depth: int = Field(32, ge=2, description="Deepest nesting of lists and objects in a payload")
    api_tokens: str | None = Field(None, description="Comma-separated bearer tokens; set: every route but /health needs one")
    cors_allow_origins: str = Field(
        "", description="Origins a browser page may call the API from: comma-separated (https://app.example.com), "
                        "or *; empty: no CORS headers at all")
    api_tokens_file: Path | None = Field(None, description="A file of bearer tokens, one a line (# comments)")
    url_signing_secret: str | None = Field(
        None, description="Key for signed media and live-update URLs (POST /signed-urls); unset: derived from the API "
                          "tokens, so every server with the same tokens signs alike")
    signed_url_max_seconds: int = Field(7 * 24 * 3600, ge=60, description="Longest life a signed URL may be given")
    metrics_public: bool = Field(False, description="Serve /metrics without a token while auth is on")
    idempotency_ttl_seconds: int = Field(
        24 * 3600, ge=60, description="How long an Idempotency-Key is remembered (its record and status code)"
    )
    models_dir: Path | None = Field(
        None, description="Folder of CTranslate2 Whisper model folders that `model` may name (unset: bundled models only)"
    )

    def cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_allow_origins.split(",") if o.strip()]

    def tokens(self) -> list[str]:
        """The configured bearer tokens: API_TOKENS and the lines of API_TOKENS_FILE, without blanks."""
        found = [t.strip() for t in (self.api_tokens or "").split(",")]
        if self.api_tokens_file is not None:
            for line in Path(self.api_tokens_file).read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    found.append(line)
        return list(dict.fromkeys(t for t in found if t))

    @property
    def job_ttl_seconds(self) -> float:
        """``JOB_TTL_DAYS`` in seconds (0: finished jobs are kept forever)."""
        return self.job_ttl_days * 86400

    @property
    def media_url(self) -> str:
        """The media root as a local path or fsspec URL."""
        if self.media_root:
            return self.media_root
        return str((self.data_dir / "media").resolve())
