"""Evaluating parsed values in the dispatcher, and what of a run's results it needs to hold.

The runner and the dispatcher (``then:`` chains) both evaluate parsed references here:
``$payload``, ``$job``, ``$outputs``, ``$item`` and the results of the nodes the dispatcher
fetched (:func:`kept_nodes`); everything else stays on the workers, and a task's template
(:func:`task_template`) refers to it by the future it is passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.graph import Graph, Node
from pipelines.refs import Collect, Literal_, Ref, map_tree, walk_refs
from pipelines.run.task import Each, Slot, access

__all__ = ["DEFAULT_MAX_TASKS", "SKIPPED", "FutureItem", "JobInfo", "Mapped", "fan_out_problem", "kept_nodes",
           "resolve_value", "task_template"]

#: Most tasks one node's fan-out may start unless the node or graph says otherwise
#: (the MAX_TASKS_PER_NODE setting's default; the dispatcher passes the setting).
DEFAULT_MAX_TASKS = 1000


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: str
    type: str
    priority: int = 0
    attempt: int = 1

    @property
    def token(self) -> str:
        """The part of every task key that names this job (and its attempt, after the first)."""
        return self.id if self.attempt <= 1 else f"{self.id}.a{self.attempt}"


def resolve_value(parsed: Any, *, values: dict[str, Any], job: JobInfo, results: dict[str, Any] | None = None,
                  outputs: dict[str, Any] | None = None, item: Any = None) -> Any:
    """Evaluate a parsed value client-side: literals, ``$payload``, ``$job``, node results, ``$outputs``,
    and ``$item`` (a chain's ``for_each`` element)."""

    def leaf(value: Any) -> Any:
        if isinstance(value, Literal_):
            return value.value
        if isinstance(value, Collect):
            value = value.ref  # a mapped node's results are already its ordered list
        if isinstance(value, Ref):
            return _resolve_ref(value, values=values, job=job, results=results, outputs=outputs, item=item)
        return value

    return map_tree(parsed, leaf)


def _resolve_ref(ref: Ref, *, values: dict[str, Any], job: JobInfo, results: dict[str, Any] | None,
                 outputs: dict[str, Any] | None, item: Any) -> Any:
    if ref.scope == "item" and item is not None:
        return access(item, ref.path)
    if ref.scope == "payload":
        return access(values.get(ref.name), ref.path)
    if ref.scope == "job":
        return {"id": job.id, "priority": job.priority, "attempt": job.attempt, "type": job.type}[ref.name]
    if ref.scope == "outputs":
        return access((outputs or {}).get(ref.name), ref.path)
    if ref.scope == "node":
        value = (results or {})[ref.name]
        if isinstance(value, Mapped):
            return [access(v, ref.path) for v in value.items]
        return access(value, ref.path)
    raise ValueError(f"'{ref.text}' cannot be evaluated here")


def kept_nodes(graph: Graph) -> frozenset[str]:
    """The nodes whose results the dispatcher needs in its own process; the others stay on the workers.

    What a fan-out maps over (its length and items; a mapped node's futures serve as items
    without it) and what the graph's outputs name.
    """
    sources = {n.map.name for n in graph.nodes.values()
               if n.map is not None and n.map.scope == "node" and not graph.nodes[n.map.name].mapped}
    named = {(r.ref if isinstance(r, Collect) else r) for r in walk_refs(list(graph.outputs.values()))}
    return frozenset(sources | {r.name for r in named if r.scope == "node"})


@dataclass(slots=True)
class Mapped:
    """The results of a mapped node, in item order."""

    items: list[Any]


SKIPPED = object()  # the handle of a node whose ``when:`` did not hold


@dataclass(frozen=True, slots=True)
class FutureItem:
    """An item of a fan-out over a mapped node: that node's future for the same position."""

    future: Any


def task_template(parsed: Any, handles: dict[str, Any], args: list[Any], item: Any, *, values: dict[str, Any],
                  job: JobInfo) -> Any:
    """What a task fills on its worker: literals, and slots for the futures it is passed in ``args``.

    ``handles`` holds each dependency's future (a list of them for a mapped node), or SKIPPED.
    """

    def pass_future(future: Any, path: tuple[str, ...], kind: type[Slot] | type[Each]) -> Slot | Each:
        args.append(future)
        return kind(len(args) - 1, path)

    def leaf(value: Any) -> Any:
        if isinstance(value, Literal_):
            return value.value
        if isinstance(value, Collect):
            handle = handles[value.ref.name]
            return [] if handle is SKIPPED else pass_future(handle, value.ref.path, Each)
        if not isinstance(value, Ref):
            return value
        if value.scope == "node":
            handle = handles[value.name]
            return None if handle is SKIPPED else pass_future(handle, value.path, Slot)
        if value.scope == "item":
            if isinstance(item, FutureItem):
                return pass_future(item.future, value.path, Slot)
            return access(item, value.path)
        return resolve_value(value, values=values, job=job)

    return map_tree(parsed, leaf)


def fan_out_problem(node: Node, count: int, default_limit: int) -> str | None:
    """Why a fan-out of ``count`` tasks may not start (past the node's ``max_tasks``), or None."""
    limit = node.max_tasks or default_limit
    if count <= limit or node.map is None:
        return None
    return (f"node '{node.name}' would start {count} tasks (one per item of {node.map.text}), more than its "
            f"max_tasks {limit}: make that list shorter (for chunks, raise chunk_seconds) or raise max_tasks "
            "(the node's max_tasks:, the graph's max_tasks_per_node: or MAX_TASKS_PER_NODE)")
