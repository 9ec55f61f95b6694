"""``/jobs/``: create, read, list and cancel jobs, exactly as the API reference documents."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.exceptions import HTTPException
from litestar.params import Parameter

from scheduler.errors import InvalidTransitionError, QueueUnavailableError
from scheduler.runtime import Runtime
from scheduler.service import JobService
from scheduler.settings import Settings
from scheduler.store import STATUSES, JobStore
from scheduler.webhooks import CallbackURLError, ReplayRefusedError, check_callback_url
from server.errors import queue_error_detail, unprocessable

__all__ = ["JobController"]


class JobController(Controller):
    path = "/jobs"
    tags = ["jobs"]

    @post("/", status_code=202, summary="Create and enqueue a job")
    async def create_job(
        self,
        service: JobService,
        settings: Settings,
        data: dict[str, Any],
        job_type: str,
        clip_version_id: str | None = None,
        priority: Annotated[int, Parameter(ge=-1_000_000, le=1_000_000)] = 0,
        callback_url: Annotated[str | None, Parameter(
            description="POSTed a signed {event, job} when the job ends (see the webhooks section)")] = None,
    ) -> dict[str, Any]:
        """The body is the job's payload; the graph of ``job_type`` checks it before it is queued."""
        if callback_url is not None:
            await _check_callback(callback_url, settings)
        try:
            return await service.submit(job_type, data, priority=priority, clip_version_id=clip_version_id,
                                        callback_url=callback_url)
        except QueueUnavailableError as exc:
            raise HTTPException(status_code=503, detail=f"Failed to enqueue job: {queue_error_detail(exc)}") from None

    @get("/", summary="List jobs, newest first")
    async def list_jobs(
        self,
        store: JobStore,
        status: str | None = None,
        job_type: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise unprocessable(["query", "status"], f"status must be one of: {', '.join(STATUSES)}")
        return await store.list(status=status, job_type=job_type, limit=limit)

    @get("/{job_id:str}", summary="The latest state of a job")
    async def get_job(self, store: JobStore, job_id: str) -> dict[str, Any]:
        return await store.get(job_id)

    @post("/{job_id:str}/cancel", status_code=200, summary="Cancel a job that has not finished")
    async def cancel_job(self, store: JobStore, job_id: str) -> dict[str, Any]:
        """The job becomes ``cancelled`` and its Dask tasks are cancelled; a finished job gives 409."""
        try:
            await store.cancel(job_id, message="Cancelled by request")
        except InvalidTransitionError as exc:
            raise HTTPException(status_code=409, detail=f"Job {job_id} is already {exc.current}") from None
        return await store.get(job_id)

    @get("/{job_id:str}/webhooks", summary="The job's webhook deliveries and every attempt")
    async def list_webhooks(self, runtime: Runtime, job_id: str) -> dict[str, Any]:
        """``callback_url``, each delivery (``pending``, ``delivered`` or ``failed``) and each attempt's
        time, status code and error, oldest first."""
        return await runtime.webhooks.listing(job_id)

    @post("/{job_id:str}/webhooks/replay", status_code=202, summary="Send the job's final event again")
    async def replay_webhook(self, runtime: Runtime, job_id: str) -> dict[str, Any]:
        """A new delivery of the job's terminal event, due now; 409 before the job ends or without a callback_url."""
        try:
            return await runtime.webhooks.enqueue_replay(job_id)
        except ReplayRefusedError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None


async def _check_callback(url: str, settings: Settings) -> None:
    """A 422 on ``callback_url`` unless webhooks may reach it (and can be signed)."""
    if not settings.webhook_secret:
        raise unprocessable(["query", "callback_url"],
                            "webhooks are signed: set WEBHOOK_SECRET on the server to use callback_url")
    try:
        await check_callback_url(url, allow_private=settings.webhook_allow_private)
    except CallbackURLError as exc:
        raise unprocessable(["query", "callback_url"], str(exc)) from None
