"""Job graphs: the YAML spec, loading and validation, and running them on Dask."""

from pipelines.errors import (
    CollectWithoutMapError,
    GraphCycleError,
    GraphError,
    GraphLoadError,
    GraphValidationError,
    InvalidParamsError,
    JobFailedError,
    PayloadError,
    UnknownInputError,
    UnknownOperatorInGraphError,
    UnresolvedReferenceError,
)
from pipelines.graph import Chain, Graph, Node
from pipelines.loader import load_graph, load_graph_dir, parse_graph
from pipelines.payload import BoundPayload, SourceRequest, bind_payload
from pipelines.run.runner import DEFAULT_MAX_TASKS, GraphRun, JobInfo, resolve_value

__all__ = [
    "DEFAULT_MAX_TASKS",
    "BoundPayload",
    "Chain",
    "CollectWithoutMapError",
    "Graph",
    "GraphCycleError",
    "GraphError",
    "GraphLoadError",
    "GraphRun",
    "GraphValidationError",
    "InvalidParamsError",
    "JobFailedError",
    "JobInfo",
    "Node",
    "PayloadError",
    "SourceRequest",
    "UnknownInputError",
    "UnknownOperatorInGraphError",
    "UnresolvedReferenceError",
    "bind_payload",
    "load_graph",
    "load_graph_dir",
    "parse_graph",
    "resolve_value",
]
