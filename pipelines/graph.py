"""A validated graph: what the loader produces and the runner executes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from operators.registry import OperatorSpec
from pipelines.refs import Condition, Literal_, Ref, map_tree
from pipelines.spec import ChainSpec, GraphSpec
from pipelines.run.task import access

__all__ = ["Chain", "Graph", "Node"]


@dataclass(frozen=True, slots=True)
class Node:
    """One node, with its operator looked up, params validated and references parsed."""

    name: str
    op: OperatorSpec
    params: BaseModel
    inputs: dict[str, Any]
    map: Ref | None
    deps: frozenset[str]
    weight: float
    retries: int
    resources: dict[str, float]
    params_template: dict[str, Any] | None = None
    timeout: float | None = None
    #: Conditions, all of which must hold for the node to run.
    when: tuple[Condition, ...] = ()
    #: Most tasks a fan-out of this node may start (its own ``max_tasks:``, else the graph's);
    #: None leaves it to the runner's default (MAX_TASKS_PER_NODE).
    max_tasks: int | None = None
    #: Results kept in the cache shared by jobs (``cache: true``; see :mod:`pipelines.cache`).
    cache: bool = False

    def bind_params(self, values: dict[str, Any]) -> BaseModel:
        """The params with ``$payload`` references filled in from a job's values."""
        if self.params_template is None:
            return self.params

        def leaf(value: Any) -> Any:
            if isinstance(value, Literal_):
                return value.value
            if isinstance(value, Ref):  # the loader allows only $payload references in params
                return access(values.get(value.name), value.path)
            return value

        filled = map_tree(self.params_template, leaf)
        return self.op.parse_params({k: v for k, v in filled.items() if v is not None})

    @property
    def mapped(self) -> bool:
        return self.map is not None


@dataclass(frozen=True, slots=True)
class Chain:
    """A ``then:`` entry with its values parsed once, at load (the dispatcher only evaluates them)."""

    spec: ChainSpec
    #: A parsed value; a list means all of its conditions must hold.
    when: Any
    priority: Any
    payload: dict[str, Any]
    clip_version_id: Any
    #: The list to submit one job per element of (``$outputs.clips``), or None for one job.
    for_each: Ref | None = None

    @property
    def job_type(self) -> str:
        return self.spec.job_type


@dataclass(frozen=True, slots=True)
class Graph:
    """A loaded graph; ``nodes`` are in a topological order."""

    spec: GraphSpec
    file: str
    nodes: dict[str, Node]
    outputs: dict[str, Any]
    chains: tuple[Chain, ...] = field(default=())
    #: Inputs whose type is a registered payload model: name → the pydantic model class.
    input_models: dict[str, type[BaseModel]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def total_weight(self) -> float:
        return sum(node.weight for node in self.nodes.values())

    def describe(self) -> dict[str, Any]:
        """A JSON summary for the API: inputs, nodes and outputs."""
        inputs = {k: v.model_dump(exclude_defaults=True) for k, v in self.spec.inputs.items()}
        for name, model in self.input_models.items():
            # The whole structure a client must send, e.g. the timeline's JSON Schema.
            inputs[name]["schema"] = model.model_json_schema(by_alias=True)
        return {
            "name": self.spec.name,
            "description": self.spec.description,
            "inputs": inputs,
            "nodes": {
                n.name: {"op": n.op.name, "map": n.map.text if n.map else None, "deps": sorted(n.deps)}
                for n in self.nodes.values()
            },
            "outputs": sorted(self.outputs),
            **({"clip_version": self.spec.clip_version.model_dump()} if self.spec.clip_version else {}),
        }
