"""Live job updates: the WebSocket ``/ws/jobs/{job_id}`` and server-sent events ``/jobs/{job_id}/events``.

Both send the job record exactly as ``GET /jobs/{id}`` returns it: first the current one, then one
per change, until the terminal one. The records come from the process's
:class:`scheduler.notify.events.JobEvents` hub, which hears every change through Redis, so any API server
serves any job wherever it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response, get, websocket
from litestar.connection import WebSocket
from litestar.di import Provide
from litestar.exceptions import WebSocketDisconnect
from litestar.openapi import ResponseSpec
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send

from scheduler.errors import JobNotFoundError, QueueUnavailableError
from scheduler.notify.events import JobEvents, Subscription
from scheduler.settings import Settings
from server.deps import provide_events, provide_settings
from server.errors import queue_error_detail
from server.openapi import responses

__all__ = ["job_events", "job_updates"]

_log = logging.getLogger("server.live")
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 1011


def _hub(events: JobEvents | None) -> JobEvents:
    if events is None:
        raise QueueUnavailableError("live updates are not running")
    return events


def _reason(text: str) -> str:
    """A close reason fits in 123 bytes."""
    data = text.encode()
    return text if len(data) <= 123 else data[:120].decode(errors="ignore") + "..."


async def _until_disconnect(socket: WebSocket[Any, Any, Any], sub: Subscription) -> None:
    """Read (and ignore) what the client sends; when it leaves, end its subscription."""
    try:
        while True:
            await socket.receive_data("text")
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001
        pass
    finally:
        sub.close()


@websocket("/ws/jobs/{job_id:str}", name="job_updates",
           dependencies={"events": Provide(provide_events, sync_to_thread=False)})
async def job_updates(socket: WebSocket[Any, Any, Any], job_id: str, events: JobEvents | None) -> None:
    """Send the job record on connect and after each change; close 1000 after the terminal one.

    An unknown job closes with 4404 (and the reason ``Job <id> not found``); Redis unreachable, 1011.
    """
    await socket.accept()
    try:
        sub = await _hub(events).subscribe(job_id)
    except JobNotFoundError as exc:
        await socket.close(code=CLOSE_NOT_FOUND, reason=_reason(str(exc)))
        return
    except QueueUnavailableError as exc:
        await socket.close(code=CLOSE_UNAVAILABLE, reason=_reason(queue_error_detail(exc)))
        return
    reader = asyncio.create_task(_until_disconnect(socket, sub))
    try:
        while True:
            message = await sub.get()
            if message is None:
                return  # the client left
            await socket.send_data(message.text)
            if message.terminal:
                await socket.close(code=1000, reason=message.status)
                return
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # gone while we were sending
    finally:
        sub.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


def _last_event_id(request: Request[Any, Any, Any], last_event_id: str | None) -> int:
    raw = request.headers.get("last-event-id") or last_event_id
    try:
        return int(raw) if raw is not None else -1
    except ValueError:
        return -1


@get("/jobs/{job_id:str}/events", name="job_events", summary="Server-sent events of a job's changes",
     tags=["jobs"], media_type="text/event-stream", operation_id="jobEvents", dependencies={
         "events": Provide(provide_events, sync_to_thread=False),
         "settings": Provide(provide_settings, sync_to_thread=False),
     }, responses={
         **responses(None, None, 404, 503),
         200: ResponseSpec(str, media_type="text/event-stream", generate_examples=False,
                           description="Events: 'id: <n>' and 'data: <the job record as JSON>', until the terminal one"),
         204: ResponseSpec(None, description="The client has already seen the terminal event: do not reconnect"),
     })
async def job_events(request: Request[Any, Any, Any], events: JobEvents | None, settings: Settings, job_id: str,
                     last_event_id: str | None = None) -> Response[Any]:
    """``text/event-stream``: each event's ``data`` is the job record, its ``id`` the job's change count.

    A reconnect with ``Last-Event-ID`` (the header, or the ``last_event_id`` query parameter) gets the
    current record if it changed since, and nothing it has already; one that has seen the terminal
    event gets 204, which tells an EventSource to stop. The stream ends after the terminal event;
    a comment every ``SSE_HEARTBEAT_SECONDS`` keeps proxies from closing an idle one.
    """
    after = _last_event_id(request, last_event_id)
    sub = await _hub(events).subscribe(job_id, after_rev=after)  # 404 / 503 through the handlers
    try:
        current = sub.current
        if current is not None and after > current.rev:
            # An id this job never had (another job's, or from before a data reset): start afresh.
            sub.last_rev = -1
            sub.offer(current)
        elif current is not None and current.terminal and current.rev <= after:
            sub.close()
            return Response(content=b"", status_code=204, media_type="text/event-stream")
        return _SubscriptionStream(sub, _event_stream(sub, settings.sse_heartbeat_seconds),
                                   media_type="text/event-stream",
                                   headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    except BaseException:
        sub.close()
        raise


async def _event_stream(sub: Subscription, heartbeat: float) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 2000\n\n"
        while True:
            message = await sub.get(timeout=heartbeat)
            if message is None:
                if sub.closed:
                    return
                yield b": keepalive\n\n"
                continue
            yield b"id: %d\ndata: %s\n\n" % (message.rev, message.data)
            if message.terminal:
                return
    finally:
        sub.close()


class _SubscriptionStream(Stream):
    """The SSE response, owner of the client's subscription: it is closed when the response ends, however it
    ends, including when its stream never starts (the client gone before the first byte, an error sending the
    headers), which the generator's own ``finally`` cannot see: a generator never started never runs it."""

    __slots__ = ("subscription",)

    def __init__(self, subscription: Subscription, content: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.subscription = subscription

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        try:
            response = super().to_asgi_response(*args, **kwargs)
        except BaseException:
            self.subscription.close()
            raise
        return _ClosingResponse(response, self.subscription)


class _ClosingResponse(ASGIResponse):
    """``response``, then the subscription closed (what :class:`Litestar <litestar.Litestar>` calls is the
    ASGI callable; nothing else of it is read)."""

    __slots__ = ("response", "subscription")

    def __init__(self, response: ASGIResponse, subscription: Subscription) -> None:
        # Not ASGIResponse.__init__: this only wraps the response Litestar built, headers and all.
        self.response = response
        self.subscription = subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            self.subscription.close()
