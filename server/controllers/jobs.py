"""``/jobs/``: create, read, list, cancel and delete jobs, exactly as the API reference documents (and
``DELETE``, which it does not: a finished job, its log and its intermediates go; its assets stay)."""

from __future__ import annotations

import contextlib
import zlib
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.serialization import encode_json

from operators.storage import Storage
from scheduler.errors import InvalidTransitionError, QueueUnavailableError
from scheduler.records.idempotency import IdempotencyStore, StoredResponse
from scheduler.dispatch.retention import purge_intermediates, remove_intermediates
from scheduler.admission.graphs import GraphCatalog
from scheduler.admission.service import JobService
from scheduler.settings import Settings
from scheduler.records.jobs import STATUSES, JobStore
from scheduler.notify.webhook_guard import CallbackURLError, check_callback_url
from scheduler.notify.webhooks import ReplayRefusedError, WebhookStore
from server.auth import TOKEN_SCOPE_KEY
from server.deps import (
    provide_catalog,
    provide_idempotency,
    provide_service,
    provide_settings,
    provide_storage,
    provide_store,
    provide_webhooks,
)
from server.errors import queue_error_detail, unprocessable
from server.paging import CURSOR, page_response, parse_cursor
from server.openapi import responses
from server.schemas import JobRecord, WebhookDelivery, WebhookListing

__all__ = ["IDEMPOTENCY_KEY", "JobController", "replayed", "since"]

IDEMPOTENCY_KEY = Parameter(
    header="Idempotency-Key", required=False, min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="Makes the POST safe to retry: the same key with the same request, within 24 h, answers the "
                "original record and status code without creating anything; with another request, 422. "
                "Scoped per token. Up to 255 visible ASCII characters.",
)


def since(record: dict[str, Any], stamp: str) -> dict[str, Any]:
    """The record with only the log entries stamped after ``stamp`` (ISO timestamps of one format sort as text)."""
    payload = record.get("result_payload")
    if isinstance(payload, dict) and isinstance(payload.get("log"), list):
        record["result_payload"] = {**payload, "log": [e for e in payload["log"] if e.get("timestamp", "") > stamp]}
    return record


def replayed(stored: StoredResponse) -> Response[bytes]:
    """The original answer to an Idempotency-Key, as it was sent."""
    return Response(content=stored.body, status_code=stored.status_code, media_type=MediaType.JSON,
                    headers={"Idempotent-Replayed": "true"})


class JobController(Controller):
    path = "/jobs"
    tags = ["jobs"]
    dependencies = {
        "settings": Provide(provide_settings, sync_to_thread=False),
        "catalog": Provide(provide_catalog, sync_to_thread=False),
        "store": Provide(provide_store, sync_to_thread=False),
        "service": Provide(provide_service, sync_to_thread=False),
        "idempotency": Provide(provide_idempotency, sync_to_thread=False),
        "storage": Provide(provide_storage, sync_to_thread=False),
        "webhooks": Provide(provide_webhooks, sync_to_thread=False),
    }

    @post("/", status_code=202, summary="Create and enqueue a job", operation_id="createJob",
          responses=responses(202, JobRecord, 400, 409, 422, 503, description="The job, queued"))
    async def create_job(
        self,
        request: Request[Any, Any, Any],
        service: JobService,
        idempotency: IdempotencyStore,
        settings: Settings,
        data: dict[str, Any],
        job_type: str,
        clip_version_id: str | None = None,
        priority: Annotated[int, Parameter(ge=-1_000_000, le=1_000_000)] = 0,
        callback_url: Annotated[str | None, Parameter(
            description="POSTed a signed {event, job} when the job ends (see the webhooks section)")] = None,
        idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
    ) -> Any:
        """The body is the job's payload; the graph of ``job_type`` checks it before it is queued."""
        if callback_url is not None:
            await _check_callback(callback_url, settings)

        async def submit() -> dict[str, Any]:
            try:
                return await service.submit(job_type, data, priority=priority, clip_version_id=clip_version_id,
                                            callback_url=callback_url)
            except QueueUnavailableError as exc:
                raise HTTPException(status_code=503,
                                    detail=f"Failed to enqueue job: {queue_error_detail(exc)}") from None

        if idempotency_key is None:
            return await submit()
        fingerprint = idempotency.fingerprint(job_type, str(priority), clip_version_id or "\0",
                                              callback_url or "\0", msgspec.json.encode(data, order="sorted"))
        try:
            held = await idempotency.begin(request.scope.get(TOKEN_SCOPE_KEY) or "-", "jobs", idempotency_key,
                                           fingerprint)
        except QueueUnavailableError as exc:
            raise HTTPException(status_code=503, detail=f"Failed to enqueue job: {queue_error_detail(exc)}") from None
        if isinstance(held, StoredResponse):
            return replayed(held)
        try:
            async with idempotency.holding(held):  # a probe of a large source can outlast the lock: extend it
                record = await submit()
        except BaseException:
            with contextlib.suppress(Exception):
                await idempotency.release(held)
            raise
        body = encode_json(record)
        with contextlib.suppress(QueueUnavailableError):  # the job exists: answer it even if the key is lost
            await idempotency.finish(held, 202, body)
        return Response(content=body, status_code=202, media_type=MediaType.JSON)

    @get("/", summary="List jobs, newest first", operation_id="listJobs",
         responses=responses(200, list[JobRecord], 422, 503, description="Jobs, newest first"))
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        store: JobStore,
        catalog: GraphCatalog,
        status: str | None = None,
        job_type: str | None = None,
        project_id: Annotated[str | None, Parameter(description="Only jobs whose payload names this project",
                                                    max_length=200)] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, CURSOR] = None,
    ) -> Response[bytes]:
        """Newest first. More than ``limit``: the next page's URL is in the ``Link`` header (``rel="next"``)."""
        if status is not None and status not in STATUSES:
            raise unprocessable(["query", "status"], f"status must be one of: {', '.join(STATUSES)}")
        if job_type is not None and job_type not in catalog.graphs:
            raise unprocessable(["query", "job_type"],
                                f"job_type must be one of: {', '.join(catalog.job_types)}")
        page = await store.page(status=status, job_type=job_type, project_id=project_id, limit=limit,
                                after=parse_cursor(cursor))
        return page_response(request, page, page.items)

    @get("/{job_id:str}", summary="The latest state of a job", operation_id="getJob",
         responses=responses(200, JobRecord, 404, 422, 503, description="The job"))
    async def get_job(
        self, request: Request[Any, Any, Any], job_id: str,
        log_since: Annotated[str | None, Parameter(
            description="Only the log entries stamped after this timestamp (the last one the client has): a "
                        "client following a long job fetches what is new, not its whole log each time",
            max_length=64)] = None,
    ) -> Response[bytes]:
        """The route clients poll: the record's JSON comes cached from Redis while the job has not changed
        (see JobStore.get_json), and the store straight from the app's state rather than through Provide.
        Every answer has an ETag: ``If-None-Match`` with it answers 304 and no body while the job is unchanged."""
        # Not injected: a Provide adds ~7 us a request (half Litestar's own cost) on the route clients poll hardest.
        store = request.app.state.runtime.store
        if log_since is None:
            body = await store.get_json(job_id, encode_json)
        else:
            body = encode_json(since(await store.get(job_id), log_since))
        etag = f'W/"{zlib.crc32(body):08x}-{len(body):x}"'
        if request.headers.get("if-none-match") == etag:
            return Response(content=b"", status_code=304, headers={"ETag": etag})
        return Response(content=body, media_type=MediaType.JSON, headers={"ETag": etag})

    @post("/{job_id:str}/cancel", status_code=200, summary="Cancel a job that has not finished",
          operation_id="cancelJob", responses=responses(200, JobRecord, 404, 409, 503, description="The job, cancelled"))
    async def cancel_job(self, store: JobStore, storage: Storage, job_id: str) -> dict[str, Any]:
        """The job becomes ``cancelled`` and its Dask tasks are cancelled; a finished job gives 409."""
        try:
            previous = await store.cancel(job_id, message="Cancelled by request")
        except InvalidTransitionError as exc:
            raise HTTPException(status_code=409, detail=f"Job {job_id} is already {exc.current}") from None
        if previous != "in_progress":
            # No dispatcher runs it (the one running it deletes them itself once its tasks stop), but an
            # earlier, interrupted attempt may have left intermediates.
            await remove_intermediates(storage, job_id)
        return await store.get(job_id)

    @delete("/{job_id:str}", status_code=204, summary="Delete a finished job (not its assets)",
            operation_id="deleteJob", responses=responses(None, None, 404, 409, 503))
    async def delete_job(self, store: JobStore, storage: Storage, job_id: str) -> None:
        """A completed, failed or cancelled job, its log, webhook deliveries and intermediate files go; the assets
        it published stay. A job that has not finished gives 409: cancel it first."""
        try:
            keep = await store.published_paths(job_id)
        except InvalidTransitionError as exc:
            raise HTTPException(status_code=409, detail=(
                f"Job {job_id} is {exc.current}: only a finished job can be deleted; cancel it first "
                f"(POST /jobs/{job_id}/cancel)")) from None
        # Files first: a storage error (503) leaves the record, so the same DELETE can be sent again.
        await purge_intermediates(storage, job_id, keep)
        await store.delete(job_id)

    @get("/{job_id:str}/webhooks", summary="The job's webhook deliveries and every attempt",
         operation_id="listJobWebhooks", responses=responses(200, WebhookListing, 404, 503, description="Deliveries"))
    async def list_webhooks(self, webhooks: WebhookStore, job_id: str) -> dict[str, Any]:
        """``callback_url``, each delivery (``pending``, ``delivered`` or ``failed``) and each attempt's
        time, status code and error, oldest first."""
        return await webhooks.listing(job_id)

    @post("/{job_id:str}/webhooks/replay", status_code=202, summary="Send the job's final event again",
          operation_id="replayJobWebhook",
          responses=responses(202, WebhookDelivery, 404, 409, 503, description="The new delivery, due now"))
    async def replay_webhook(self, webhooks: WebhookStore, job_id: str) -> dict[str, Any]:
        """A new delivery of the job's terminal event, due now; 409 before the job ends or without a callback_url."""
        try:
            return await webhooks.enqueue_replay(job_id)
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
