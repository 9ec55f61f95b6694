"""Exception handlers: every error leaves as ``{"detail": ...}`` and nothing else."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_422_UNPROCESSABLE_ENTITY, HTTP_500_INTERNAL_SERVER_ERROR

from pipelines.errors import PayloadError
from scheduler.records.assets import AssetNotFoundError
from scheduler.records.clip_versions import ClipVersionNotFoundError
from scheduler.errors import JobNotFoundError, QueueUnavailableError, SourceError, StorageUnavailableError
from scheduler.errors import UnknownJobTypeError
from scheduler.records.idempotency import IdempotencyBusyError, IdempotencyMismatchError

__all__ = ["refuse_while_used", "EXCEPTION_HANDLERS", "queue_error_detail", "unprocessable"]

_log = logging.getLogger("server")
_MISSING = re.compile(r"Missing required (\w+) parameter '([^']+)'")


def _detail(status: int, detail: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"detail": detail}, status_code=status, media_type=MediaType.JSON, headers=headers)


def unprocessable(loc: list[str], msg: str, type_: str = "value_error") -> HTTPException:
    """A 422 naming the field, in FastAPI's shape: ``{"detail": [{"loc", "msg", "type"}]}``."""
    return HTTPException(status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                         extra=[{"loc": loc, "msg": msg, "type": type_}])


async def refuse_while_used(store: Any, record_id: str, what: str) -> None:
    """409 when a job that has not finished names ``record_id`` (deleting it would pull it from under the job)."""
    users = await store.unfinished_naming(record_id)
    if users:
        raise HTTPException(status_code=409, detail=f"{what} is used by job {', '.join(users[:5])}, which has not "
                                                    "finished: wait for it to end, or cancel it, then delete again")


def queue_error_detail(exc: QueueUnavailableError) -> str:
    if isinstance(exc, StorageUnavailableError):
        return f"Media storage unreachable: {str(exc).rstrip('.')}."
    return f"Queue connection error: {str(exc).rstrip('.')}."


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    if not extra and "JSON" in str(exc.detail):
        return _detail(HTTP_400_BAD_REQUEST, f"Malformed JSON body: {exc.detail}")
    errors = []
    missing = _MISSING.match(str(exc.detail))
    if missing:
        errors.append({"loc": [missing.group(1), missing.group(2)], "msg": "Field required", "type": "missing"})
    for item in extra:
        if not isinstance(item, dict):
            continue
        source = item.get("source") or "body"
        key = item.get("key")
        message = str(item.get("message", "invalid value"))
        if source == "body" and key == "data":
            # Litestar names the handler's argument; the client knows it as the body.
            loc = ["body"]
            if message == "'data'":
                message = "Field required: the body must be a JSON object (the job payload)"
        else:
            # A nested field comes as "colors.accent" (or "items.0.x"): named as a path, as payload errors are.
            loc = [source, *(int(p) if p.isdigit() else p for p in str(key).split("."))] if key else [source]
        errors.append({"loc": loc, "msg": message, "type": "value_error"})
    if not errors:
        errors = [{"loc": ["body"], "msg": str(exc.detail), "type": "value_error"}]
    return _detail(HTTP_422_UNPROCESSABLE_ENTITY, errors)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == HTTP_422_UNPROCESSABLE_ENTITY and isinstance(exc.extra, list):
        return _detail(exc.status_code, exc.extra)
    if isinstance(exc, RequestEntityTooLarge):
        settings = request.app.state.get("settings")
        limit = getattr(settings, "max_json_bytes", None)
        detail = (f"Request body over the limit of {limit} bytes (MAX_JSON_BYTES)" if limit
                  else "Request body over the limit")
        return _detail(413, detail)
    return _detail(exc.status_code, exc.detail, headers=exc.headers)


def _idempotency_mismatch(_: Request[Any, Any, Any], exc: IdempotencyMismatchError) -> Response[Any]:
    return _detail(HTTP_422_UNPROCESSABLE_ENTITY, [{
        "loc": ["header", "Idempotency-Key"], "type": "value_error",
        "msg": "This Idempotency-Key was already used with a different request (other parameters or another "
               "body); use a new key for a new request"}])


def _idempotency_busy(_: Request[Any, Any, Any], exc: IdempotencyBusyError) -> Response[Any]:
    return _detail(409, "A request with this Idempotency-Key is still being processed; retry it later")


def _payload(_: Request[Any, Any, Any], exc: PayloadError) -> Response[Any]:
    return _detail(HTTP_422_UNPROCESSABLE_ENTITY, exc.errors)


def _job_type(_: Request[Any, Any, Any], exc: UnknownJobTypeError) -> Response[Any]:
    return _detail(HTTP_422_UNPROCESSABLE_ENTITY, [{"loc": ["query", "job_type"], "msg": str(exc), "type": "value_error"}])


def _source(_: Request[Any, Any, Any], exc: SourceError) -> Response[Any]:
    return _detail(HTTP_422_UNPROCESSABLE_ENTITY, [{"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}])


def _not_found(_: Request[Any, Any, Any], exc: LookupError) -> Response[Any]:
    return _detail(404, str(exc))


def _queue(_: Request[Any, Any, Any], exc: QueueUnavailableError) -> Response[Any]:
    return _detail(503, queue_error_detail(exc))


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    _log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _detail(HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: _validation,
    HTTPException: _http,
    PayloadError: _payload,
    UnknownJobTypeError: _job_type,
    SourceError: _source,
    JobNotFoundError: _not_found,
    AssetNotFoundError: _not_found,
    ClipVersionNotFoundError: _not_found,
    QueueUnavailableError: _queue,
    IdempotencyMismatchError: _idempotency_mismatch,
    IdempotencyBusyError: _idempotency_busy,
    Exception: _internal,
}
