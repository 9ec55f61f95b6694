"""Running a validated graph on a Dask cluster with the futures API.

Nodes whose inputs are known are submitted at once, with the futures of their
dependencies as arguments, so the scheduler sees the whole static part of the graph.
A mapped node waits only for the list it maps over, then submits one task per element
(``transcode-<job>-00012``), at most its ``max_tasks``. Keys are deterministic per job and
attempt, every task carries the job's priority, and per-node ``retries`` go to Dask.

Results stay on the workers: the runner waits for each task to finish without fetching its
result, and passes futures on to the tasks that consume them. Only what this process itself
needs comes back: the list a fan-out maps over and the results the graph's outputs name
(``when:`` conditions see only the payload and the job).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from distributed import Client, Future, as_completed
from distributed.client import FutureCancelledError

from operators.context import OpContext
from operators.storage import Storage
from pipelines.cache.node import JobCache
from pipelines.errors import JobFailedError
from pipelines.run.deadlines import Deadlines
from pipelines.run.fetching import FetchError, fetch_result
from pipelines.graph import Graph, Node
from pipelines.run.cached import CachedNodes
from pipelines.run.stuck import HUNG_TASK_GRACE_SECONDS, watch_hung
from pipelines.run.task import access, describe_failure, run_task, step_name
from pipelines.run.values import (
    DEFAULT_MAX_TASKS,
    SKIPPED,
    FutureItem,
    JobInfo,
    Mapped,
    fan_out_problem,
    kept_nodes,
    resolve_value,
    task_template,
)

__all__ = ["DEFAULT_MAX_TASKS", "GraphRun", "JobInfo", "resolve_value"]

_log = logging.getLogger("pipelines.run.runner")

ProgressSink = Callable[[float], Awaitable[None] | None]
LogSink = Callable[[str], Awaitable[None] | None]


class GraphRun(CachedNodes):
    """One run of a graph for one job. ``await run()`` returns the job's outputs; ``cache`` serves and keeps the
    results of ``cache: true`` nodes (:mod:`pipelines.run.cached`)."""

    def __init__(
        self,
        client: Client,
        graph: Graph,
        job: JobInfo,
        *,
        values: dict[str, Any],
        storage: Storage,
        on_progress: ProgressSink | None = None,
        on_log: LogSink | None = None,
        max_seconds: float | None = None,
        max_tasks: int = DEFAULT_MAX_TASKS,
        log_tracebacks: bool = False,
        hung_task_grace: float = HUNG_TASK_GRACE_SECONDS,
        cache: JobCache | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self._to_store: dict[str, tuple[Node, str, float]] = {}
        self._storing: set[asyncio.Task[None]] = set()
        self._scattered: list[Future] = []
        self.graph = graph
        self.job = job
        #: The job's deadline (the graph's ``max_job_seconds``, else the caller's: MAX_JOB_SECONDS) and its tasks'.
        self.deadlines = Deadlines(graph.spec.max_job_seconds or max_seconds)
        #: Most tasks a node's fan-out may start where neither the node nor the graph sets it.
        self.max_tasks = max_tasks
        #: Copy a failed task's traceback into the job's log too (JOB_LOG_TRACEBACKS, or LOG_LEVEL=debug).
        self.log_tracebacks = log_tracebacks
        #: Seconds a task past a deadline may keep its worker's thread before that worker is restarted
        #: (HUNG_TASK_GRACE_SECONDS); :attr:`hung_check` does it, outliving the run (pipelines.run.stuck).
        self.hung_task_grace = hung_task_grace
        self.hung_check: asyncio.Task[None] | None = None
        self.values = values
        self.storage = storage
        self._on_progress = on_progress
        self._on_log = on_log
        self._futures: dict[str, Future] = {}
        self._weights: dict[str, float] = {}
        self._done_weight = 0.0
        self._partial: dict[str, float] = {}
        self._handles: dict[str, asyncio.Future[Any]] = {}
        self._results: dict[str, asyncio.Future[Any]] = {}
        self._last_progress = 0.0
        # Nodes a fan-out maps over. A mapped node's tasks can only be submitted once that
        # node's result is back, so until then the scheduler cannot see the work behind it
        # and runs it after any sibling that happens to be ready at the same time: in ingest,
        # ``split`` (0.03 s) waited 0.8 s behind the AAC encode while the other worker idled.
        self._map_sources = frozenset(n.map.name for n in graph.nodes.values()
                                      if n.map is not None and n.map.scope == "node")
        self._kept = kept_nodes(graph)
        self._gathered: list[str] = []
        self._fetches: set[asyncio.Future[Any]] = set()
        self._fetched: dict[str, asyncio.Future[Any]] = {}

    # -- public -----------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        return list(self._futures)

    @property
    def gathered(self) -> tuple[str, ...]:
        """The keys of the tasks whose results came back to this process, in the order they did."""
        return tuple(self._gathered)

    @property
    def progress(self) -> float:
        total = self.graph.total_weight or 1.0
        partial = sum(self._weights.get(k, 0.0) * f for k, f in self._partial.items())
        return min(1.0, (self._done_weight + partial) / total)

    def handle_event(self, event: dict[str, Any]) -> None:
        """Take a worker event (see :class:`operators.context.OpContext`) for this job."""
        kind, key = event.get("kind"), str(event.get("key", ""))
        if kind == "log" and event.get("message"):
            self._emit_log(str(event["message"]))
        elif kind == "started":
            self._started(key)
        elif kind == "progress":
            if key in self._weights and key in self._futures and not self._futures[key].done():
                self._partial[key] = max(self._partial.get(key, 0.0), float(event.get("fraction", 0.0)))
                self._emit_progress()

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        for name in self.graph.nodes:
            self._handles[name] = loop.create_future()
            self._results[name] = loop.create_future()
        self._emit_log(f"Running graph '{self.graph.name}' with {len(self.graph.nodes)} nodes")
        started = self.deadlines.began = time.monotonic()
        self._pending_nodes, self._finished = len(self.graph.nodes), asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                for node in self.graph.nodes.values():
                    group.create_task(self._node_task(node), name=f"{node.name}-{self.job.token}")
                if self.deadlines.armed(self.graph.nodes.values()):
                    group.create_task(self._watchdog(), name=f"watchdog-{self.job.token}")
        except BaseException as exc:
            await self._cache_closed(stored=False)
            if self.deadlines.late:  # failed at a deadline: the overdue tasks' threads may never come back
                self.hung_check = await watch_hung(self.client, self.job.id, self.deadlines.late,
                                                   grace=self.hung_task_grace, log=self._emit_log)
            await self._cancel_futures()
            self._release()
            failed = _first_failure(exc)
            if failed is not None:
                raise JobFailedError(str(failed)) from None
            raise
        results = {name: fut.result() for name, fut in self._results.items()}
        self._release()
        await self._cache_closed(stored=True)
        outputs = {
            key: resolve_value(parsed, values=self.values, job=self.job, results=results)
            for key, parsed in self.graph.outputs.items()
        }
        self._emit_log(f"Graph '{self.graph.name}' finished in {time.monotonic() - started:.1f}s")
        return outputs

    def _release(self) -> None:
        """Drop every Dask future of this run now, so the cluster forgets the job's tasks and results (left to the
        garbage collector, 300 jobs later the scheduler still held their tasks, which a worker kill recomputed)."""
        self._futures.clear()
        self._scattered.clear()
        self._fetched.clear()
        self._handles.clear()
        self._results = {}
        self.deadlines.clear()

    async def cancel(self) -> None:
        await self._cancel_futures()

    async def _watchdog(self) -> None:
        """Fail the job when it runs past its deadline or a task past its node's ``timeout:``
        (:meth:`pipelines.run.deadlines.Deadlines.watch`)."""
        late = await self.deadlines.watch(self._futures, lambda: all(f.done() for f in self._results.values()),
                                          self._finished)
        if late is not None:
            raise _NodeFailed(late)

    async def _node_task(self, node: Node) -> None:
        try:
            await self._run_node(node)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # A CancelledError nobody asked for (from inside a library call): a TaskGroup ignores a child
            # that ends cancelled, and the nodes waiting on this one would wait forever. Fail the job.
            raise _NodeFailed(f"A call to the cluster was cancelled unexpectedly ({step_name(node.name)}); the job can be "
                              "submitted again") from None
        self._pending_nodes -= 1
        if self._pending_nodes == 0:
            self._finished.set()

    # -- nodes --------------------------------------------------------------------------
    async def _run_node(self, node: Node) -> None:
        handles = {dep: await self._handles[dep] for dep in sorted(node.deps)}
        if not self._wanted(node):
            self._handles[node.name].set_result(SKIPPED)
            self._results[node.name].set_result(Mapped([]) if node.mapped else None)
            self._done_weight += node.weight
            self._emit_log(f"{node.name}: skipped ({', '.join(c.text for c in node.when)})")
            self._emit_progress()
            return
        if node.map is None:
            future = await self._obtain(node, handles, key=f"{node.name}-{self.job.token}", weight=node.weight)
            self._handles[node.name].set_result(future)
            self._results[node.name].set_result((await self._settle(node, [future], None))[0])
            return

        items = await self._map_items(node, handles)
        count = len(items)
        problem = fan_out_problem(node, count, self.max_tasks)
        if problem is not None:  # before any task of the fan-out is submitted
            raise _NodeFailed(problem)
        if count > 1:
            await self._spread(node, handles)
        weight = node.weight / count if count else 0.0
        if count == 0:
            self._done_weight += node.weight
            self._emit_progress()
        futures = list(await asyncio.gather(*(
            self._obtain(node, handles, key=f"{node.name}-{self.job.token}-{i:05d}", weight=weight, item=item,
                         index=i, count=count)
            for i, item in enumerate(items))))
        self._handles[node.name].set_result(futures)
        if count:
            self._emit_log(f"{node.name}: {count} parallel task{'s' if count != 1 else ''}")
        self._results[node.name].set_result(Mapped(await self._settle(node, futures, count)))

    def _wanted(self, node: Node) -> bool:
        return all(c.holds(resolve_value(c.ref, values=self.values, job=self.job)) for c in node.when)

    async def _spread(self, node: Node, handles: dict[str, Any]) -> None:
        """Copy a fan-out's shared inputs (a plan, a probe: small) to every worker first: Dask places a task where
        its inputs are, and 3 render segments queued on one worker while the other idled, until work stealing."""
        shared = [h for dep, h in handles.items() if isinstance(h, Future)]
        if not shared:
            return
        try:
            await self.client.replicate(shared)
        except Exception:  # noqa: BLE001  (an optimisation: tasks still run where the data is)
            _log.debug("replicating the inputs of %s failed", node.name, exc_info=True)

    async def _map_items(self, node: Node, handles: dict[str, Any]) -> list[Any]:
        ref = node.map
        assert ref is not None
        if ref.scope == "payload":
            value = access(self.values.get(ref.name), ref.path)
            return list(value or [])
        handle = handles[ref.name]
        if handle is SKIPPED:
            return []
        if isinstance(handle, list):  # mapping over a mapped node: item i is that node's future i
            return [FutureItem(f) for f in handle]
        result = await self._results[ref.name]
        value = access(result, ref.path)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise _NodeFailed(f"The graph's {step_name(node.name)} maps over '{ref.text}', which gave "
                              f"{type(value).__name__}, not a list")
        return list(value)

    def _submit(self, node: Node, handles: dict[str, Any], *, key: str, weight: float, item: Any = None,
                index: int | None = None, count: int | None = None) -> Future:
        args: list[Any] = []
        template = {name: task_template(parsed, handles, args, item, values=self.values, job=self.job)
                    for name, parsed in node.inputs.items()}
        ctx = OpContext(job_id=self.job.id, node=node.name, storage=self.storage, key=key, index=index,
                        count=count, attempt=self.job.attempt, timeout=node.timeout, report_start=node.cache)
        self.deadlines.track(key, node, index, count)
        # Half a step above the job's other tasks, so never above a job of higher priority.
        priority = self.job.priority + 0.5 if node.name in self._map_sources else self.job.priority
        future = self.client.submit(
            run_task, f"{node.op.func.__module__}:{node.op.name}", node.bind_params(self.values), ctx, template, *args,
            key=key, priority=priority, retries=node.retries or None,
            resources=node.resources or None, pure=False,
        )
        self._futures[key] = future
        self._weights[key] = weight
        return future

    async def _settle(self, node: Node, futures: list[Future], count: int | None) -> list[Any]:
        """Wait for the tasks of a node to finish, in any order; the results, in item order. Only a node in ``_kept``
        (or a cached task, to store) has its results fetched: the others are None and stay on the workers."""
        index = {future.key: i for i, future in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        done = 0
        async for future in as_completed(futures, loop=self.client.loop):
            position = None if count is None else (index[future.key], count)
            results[index[future.key]] = await self._outcome(node, future, position)
            done += 1
            self._task_done(node, future, count, done)
        return results

    async def _outcome(self, node: Node, future: Future, position: tuple[int, int] | None) -> Any:
        """A finished task's result if this process needs it; its failure as the job's message."""
        if future.status == "finished" and node.name not in self._kept:
            return None
        try:
            result = await self._fetch(future)  # raises a failure or cancellation as it is
        except asyncio.CancelledError:
            raise
        except FutureCancelledError as exc:
            raise _NodeFailed(f"Task {future.key} of {step_name(node.name)} was cancelled ({exc})") from None
        except FetchError as exc:
            raise _NodeFailed(f"{exc} ({step_name(node.name)})") from None
        except Exception as exc:  # noqa: BLE001  (every task failure becomes the job's message)
            message = describe_failure(node.name, str(future.key), exc, position)
            self._log_failure(str(future.key), message, exc)
            raise _NodeFailed(message) from None
        self._gathered.append(str(future.key))
        return result

    def _log_failure(self, key: str, message: str, exc: BaseException) -> None:
        """The traceback of a failed task, with the job id, in this process's log (and the job's, if asked)."""
        details = getattr(exc, "details", "") or "".join(traceback.format_exception(exc))
        _log.error("job %s: task %s failed: %s\n%s", self.job.id, key, message, details)
        if self.log_tracebacks:
            self._emit_log(f"Traceback of task {key}:\n{details.rstrip()}")

    async def _fetch(self, future: Future) -> Any:
        """A finished task's result (see :func:`pipelines.run.fetching.fetch_result`: never cancelled, bounded)."""
        return await fetch_result(self.client, future, job_id=self.job.id, pending=self._fetches)

    def _task_done(self, node: Node, future: Future, count: int | None, done: int) -> None:
        """Progress and the log for one finished task (a fan-out logs about every twentieth)."""
        self._partial.pop(str(future.key), None)
        self._done_weight += self._weights.get(str(future.key), 0.0)
        if count is None:
            self._emit_log(f"{node.name} done")
        elif done == count or count <= 20 or done % max(1, count // 20) == 0:
            self._emit_log(f"{node.name}: {done}/{count} done")
        self._emit_progress()

    async def _cancel_futures(self) -> None:
        futures = list(self._futures.values())
        self._futures.clear()
        if futures:
            try:
                await self.client.cancel(futures, force=True)
            except Exception:  # noqa: BLE001  (a lost cluster has nothing left to cancel)
                _log.debug("cancelling futures of %s failed", self.job.id, exc_info=True)

    # -- reporting ------------------------------------------------------------------------
    def _emit_progress(self) -> None:
        value = self.progress
        if value <= self._last_progress:
            return
        self._last_progress = value
        if self._on_progress is not None:
            _call(self._on_progress, value)

    def _emit_log(self, message: str) -> None:
        if self._on_log is not None:
            _call(self._on_log, message)


class _NodeFailed(Exception):
    """A node failed: the job fails with its message."""


def _first_failure(exc: BaseException) -> _NodeFailed | None:
    """The first node failure inside ``exc`` (a TaskGroup wraps them in groups, perhaps nested)."""
    if isinstance(exc, BaseExceptionGroup):
        return next((f for f in map(_first_failure, exc.exceptions) if f is not None), None)
    return exc if isinstance(exc, _NodeFailed) else None


def _call(sink: Callable[[Any], Any], value: Any) -> None:
    result = sink(value)
    if asyncio.iscoroutine(result):
        asyncio.ensure_future(result)

