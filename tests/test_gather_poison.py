"""A Dask client whose batched gather was cancelled still serves a graph run (what the chaos test found).

distributed's Client merges concurrent gathers into one request. When the gather that started a request is
cancelled while the request waits for its turn (five gathers in flight), the cancelled request stays in
place and every later gather of that client raises CancelledError at once. A dispatcher resumed from a
stall cancels its lost jobs, perhaps mid-fetch, and its other jobs then failed to fetch anything. The
runner never cancels a fetch, and clears such a request when it meets one (``clear_cancelled_gather``).
Real parts: the session's LocalCluster, the ``fanout`` test graph run by :class:`GraphRun`.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from distributed import Client, Future, LocalCluster

from operators.storage import Storage
from pipelines.errors import JobFailedError
from pipelines.payload import bind_payload
from pipelines.run.fetching import clear_cancelled_gather
from pipelines.run.runner import GraphRun, JobInfo
from scheduler.admission.graphs import GraphCatalog


def test_the_private_client_api_that_fetching_relies_on_is_still_there() -> None:
    """pipelines/run/fetching.py clears a poisoned batched gather through distributed's private attributes;
    pyproject.toml caps distributed at the release this was checked with. A release that renames them fails here,
    by name, instead of leaving the fix silently inert."""
    source = inspect.getsource(Client)
    for name in ("_gather_future", "_gather_keys", "_gather_semaphore"):
        assert f"self.{name}" in source, f"distributed.Client no longer uses {name}: review pipelines/run/fetching.py"


async def _poison(client: Client, finished: Future) -> None:
    """Leave the client with a cancelled batched gather, as a cancelled job's fetch did."""
    semaphore = client._gather_semaphore
    held = 0
    while not semaphore.locked():  # five gathers in flight: the next request waits for its turn
        await semaphore.acquire()
        held += 1
    started = asyncio.ensure_future(client.gather(finished))
    await asyncio.sleep(0.05)  # it made the batched request, which waits on the semaphore
    started.cancel()
    await asyncio.sleep(0.05)
    for _ in range(held):
        semaphore.release()


def test_a_run_fetches_through_a_client_whose_batched_gather_was_cancelled(
        dask_cluster: LocalCluster, graphs_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Client(dask_cluster.scheduler_address, asynchronous=True) as client:
            finished = client.submit(sum, [1, 2], key="poison-setup")
            assert await finished == 3
            await _poison(client, finished)
            # The client is poisoned: a plain gather fails at once (if this stops holding, Dask fixed it
            # and clear_cancelled_gather can go).
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(client.gather(finished), 5)

            graph = GraphCatalog.load(graphs_dir).get("fanout")
            bound = bind_payload(graph, {"items": [4, 5, 6]})
            run = GraphRun(client, graph, JobInfo(id="job_poisoned", type="fanout"), values=bound.values,
                           storage=Storage(str(tmp_path)))
            outputs = await asyncio.wait_for(run.run(), 60)
            assert outputs["joined"] == [4, 5, 6]
            assert not clear_cancelled_gather(client)  # nothing left to clear: gathers work again
            assert await client.gather(finished) == 3

    asyncio.run(scenario())


def test_a_stray_cancellation_inside_a_node_fails_the_job_instead_of_hanging(
        dask_cluster: LocalCluster, graphs_dir: Path, tmp_path: Path) -> None:
    """A CancelledError that no one asked for, raised inside a node (a library call), ends the node: a
    TaskGroup ignores a child that ends cancelled, and the nodes downstream of it would wait forever.

    The stray error is injected (a stub fetch): the real one, above, is now caught where it arises."""

    async def scenario() -> None:
        async with Client(dask_cluster.scheduler_address, asynchronous=True) as client:
            graph = GraphCatalog.load(graphs_dir).get("fanout")
            bound = bind_payload(graph, {"items": [1, 2]})
            run = GraphRun(client, graph, JobInfo(id="job_stray", type="fanout"), values=bound.values,
                           storage=Storage(str(tmp_path)))

            async def cancelled_fetch(future: Future) -> None:
                raise asyncio.CancelledError

            run._fetch = cancelled_fetch  # type: ignore[method-assign]
            with pytest.raises(JobFailedError, match=r"A call to the cluster was cancelled unexpectedly \(step 'listed'\)"):
                await asyncio.wait_for(run.run(), 30)

    asyncio.run(scenario())
