"""Fetching a finished task's result into the dispatcher, safely: bounded tries, never a cancelled gather."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from distributed import Client, Future

__all__ = ["FETCH_TIMEOUT", "FETCH_TRIES", "FetchError", "clear_cancelled_gather", "fetch_result"]

_log = logging.getLogger("pipelines.run.fetching")

#: Seconds for one try at fetching a finished task's result into this process, and how many tries. Only
#: what a ``map:`` runs over and the graph's outputs are fetched: small values, milliseconds each.
FETCH_TIMEOUT = 15.0
FETCH_TRIES = 3


class FetchError(RuntimeError):
    """A finished task's result could not be fetched in :data:`FETCH_TRIES` tries."""


async def fetch_result(client: Client, future: Future, *, job_id: str, pending: set[asyncio.Future[Any]]) -> Any:
    """A finished task's result, each try bounded by FETCH_TIMEOUT; a fetch is never cancelled.

    distributed's Client batches concurrent gathers into one request (``Client._gather_future``). When
    the gather that started a request is cancelled while the request waits for its turn (five gathers
    in flight), every gather batched into it raises CancelledError, and the cancelled request stays
    in place, so every later gather of that client raises it at once: one stale run stopped mid-fetch
    (a dispatcher resumed from SIGSTOP cancels its lost jobs) poisoned the client for all the others
    (the chaos test; tests/test_gather_poison.py shows it on a bare client). So a cancelled run leaves
    its fetch to finish (asyncio.wait does not cancel what it waits on), a try that times out is left
    behind the same way, and a fetch cancelled by someone else clears the poisoned request and tries
    again.

    ``pending`` keeps a strong reference to each fetch until it ends (the loop keeps only weak ones), also
    to one left behind.
    """
    for attempt in range(1, FETCH_TRIES + 1):
        fetch = asyncio.ensure_future(client.gather(future))
        pending.add(fetch)
        fetch.add_done_callback(pending.discard)
        done, _ = await asyncio.wait({fetch}, timeout=FETCH_TIMEOUT)
        if fetch in done and not fetch.cancelled():
            return fetch.result()
        if fetch in done:
            cleared = clear_cancelled_gather(client)
            _log.warning("%s: fetching the result of %s was cancelled by another gather of the client "
                         "(try %d of %d%s)", job_id, future.key, attempt, FETCH_TRIES,
                         "; cleared its cancelled request" if cleared else "")
            continue
        _log.warning("%s: fetching the result of %s timed out (try %d of %d)", job_id, future.key, attempt,
                     FETCH_TRIES)
    raise FetchError(f"could not fetch the result of task {future.key} from the cluster in {FETCH_TRIES} tries of "
                     f"{FETCH_TIMEOUT:g}s; the job can be submitted again")


def clear_cancelled_gather(client: Client) -> bool:
    """Forget a batched gather request of ``client`` that was cancelled before it ran (see :func:`fetch_result`);
    whether there was one. Later gathers then start a request of their own instead of failing at once."""
    pending = getattr(client, "_gather_future", None)
    if pending is None or not pending.done() or not pending.cancelled():
        return False
    client._gather_future = None
    client._gather_keys = None
    return True
