"""The Python type of each of a graph's outputs, from its operators' return annotations.

An output ``$join`` is what ``render.join`` returns; ``$plan.timeline`` is the ``timeline`` field
of what ``render.plan`` returns; a mapped node's ``$node`` and ``{collect: $node}`` are lists of it;
a node that may be skipped (``when:``) may give ``None``. The server turns these into the
``<JobType>Outputs`` schemas of the OpenAPI document, so a generated client knows what
``result_payload.outputs`` holds (``Any`` where an operator does not say).
"""

from __future__ import annotations

import typing
from typing import Any, Optional, Union

from pydantic import BaseModel

from pipelines.graph import Graph
from pipelines.refs import Collect, Literal_, Ref

__all__ = ["output_types"]


def output_types(graph: Graph) -> dict[str, Any]:
    """Each output's type (``typing.Any`` where it cannot be told)."""
    return {name: _value_type(graph, value) for name, value in graph.outputs.items()}


def _value_type(graph: Graph, value: Any) -> Any:
    if isinstance(value, Collect):
        return list[_node_type(graph, value.ref, whole=False)]  # type: ignore[misc]
    if isinstance(value, Ref) and value.scope == "node":
        return _node_type(graph, value, whole=True)
    if isinstance(value, Literal_):
        return type(value.value) if isinstance(value.value, str | int | float | bool) else Any
    return Any


def _node_type(graph: Graph, ref: Ref, *, whole: bool) -> Any:
    node = graph.nodes.get(ref.name)
    if node is None:
        return Any
    try:
        found: Any = typing.get_type_hints(node.op.func).get("return", Any)
    except Exception:  # noqa: BLE001  (an annotation that does not resolve: say nothing rather than fail)
        return Any
    for name in ref.path:
        found = _field(found, name)
    if whole and node.mapped:
        found = list[found]  # type: ignore[valid-type]
    if node.when:
        found = Optional[found]  # noqa: UP007  (a runtime type, built from a variable)
    return found


def _field(owner: Any, name: str) -> Any:
    """The type of field ``name`` of ``owner`` (a pydantic model, or an optional one)."""
    options = typing.get_args(owner) if typing.get_origin(owner) in (Union, getattr(__import__("types"), "UnionType")) \
        else (owner,)
    models = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
    if len(models) != 1 or name not in models[0].model_fields:
        return Any
    annotation = models[0].model_fields[name].annotation
    return Optional[annotation] if type(None) in options else annotation  # noqa: UP007
