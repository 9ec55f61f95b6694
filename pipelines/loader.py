"""Loading graph files: parse, check the shape, then validate everything before any job runs.

Validation covers what Kedro checks at load: unknown operators (with a "did you mean"),
params against each operator's pydantic model, inputs against each operator's signature,
unresolved references, ``collect`` without ``map``, and cycles (with networkx). Every problem
of a graph is reported at once: one error lists them all, each with its line and its node or
field. References (``then:`` chains included) are parsed here, once; runs only evaluate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import yaml
from pydantic import ValidationError

from operators.errors import UnknownOperatorError, did_you_mean
from operators.registry import REGISTRY, OperatorRegistry, OperatorSpec
from pipelines.checks import Problems, check_input_types, check_params, check_ref, parse_when
from pipelines.errors import (
    GraphCycleError,
    GraphError,
    GraphLoadError,
    GraphValidationError,
    UnknownInputError,
    UnknownOperatorInGraphError,
    UnresolvedReferenceError,
)
from pipelines.graph import Chain, Graph, Node
from pipelines.refs import Collect, Condition, Literal_, Ref, parse_ref, parse_value, walk_refs
from pipelines.spec import ChainSpec, GraphSpec, NodeSpec
from pipelines.yaml_lines import load_with_lines

__all__ = ["load_graph", "load_graph_dir", "parse_graph"]


def load_graph(path: str | Path, registry: OperatorRegistry | None = None) -> Graph:
    """Load and validate one graph file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphLoadError(f"cannot read graph file: {exc.strerror}", file=str(path)) from None
    return _parse(text, file=str(path), registry=registry, job_type=path.stem)


def load_graph_dir(folder: str | Path, registry: OperatorRegistry | None = None) -> dict[str, Graph]:
    """Load every ``*.yaml`` in ``folder``; the first broken file raises."""
    graphs: dict[str, Graph] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        graph = load_graph(path, registry)
        graphs[graph.name] = graph
    return graphs


def parse_graph(text: str, *, file: str = "<graph>", registry: OperatorRegistry | None = None) -> Graph:
    """Parse and validate graph YAML text; a :class:`GraphError` lists every problem found."""
    return _parse(text, file=file, registry=registry, job_type=None)


def _parse(text: str, *, file: str, registry: OperatorRegistry | None, job_type: str | None) -> Graph:
    """Parse, check the shape, validate; ``job_type`` (the file's name) must be the graph's name."""
    if registry is None:
        import operators  # noqa: F401  (registers the built-in operators)

        registry = REGISTRY
    try:
        data, lines = load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise GraphLoadError(f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise GraphLoadError("a graph file must be a mapping with name, inputs, nodes and outputs", file=file, line=1)
    problems = Problems(file, lines)
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:
        # Every shape problem at once; the checks below need a well-formed spec, so they wait.
        raise GraphError.combine([
            GraphLoadError(f"{'.'.join(map(str, err['loc'])) or '(graph)'}: {err['msg']}", file=file,
                           line=problems.at(*err["loc"]))
            for err in exc.errors()]) from None
    if job_type is not None and spec.name != job_type:
        problems.errors.append(GraphValidationError(
            f"graph name '{spec.name}' must match its file name '{job_type}' (the job_type)", file=file,
            line=problems.at("name")))
    return _validate(spec, registry, problems)


@dataclass(frozen=True, slots=True)
class _Parts:
    """What the checks of one node give: its operator, params, parsed inputs and dependencies."""

    op: OperatorSpec | None
    params: Any
    params_template: dict[str, Any] | None
    inputs: dict[str, Any]
    map: Ref | None
    deps: frozenset[str]


def _validate(spec: GraphSpec, registry: OperatorRegistry, problems: Problems) -> Graph:
    """Check every part of ``spec``, then raise what was found, or build the graph."""
    input_models = check_input_types(spec, registry, problems)
    mapped = {name for name, node in spec.nodes.items() if node.map is not None}
    parts = {name: _node_parts(name, node, spec, registry, mapped, problems) for name, node in spec.nodes.items()}
    when = {name: parse_when(name, node.when, spec, problems) for name, node in spec.nodes.items()}
    order = _order(spec, parts, problems)
    outputs = {key: _parse_output(key, raw, spec, problems) for key, raw in spec.outputs.items()}
    chains = tuple(_parse_chain(i, chain, spec, problems) for i, chain in enumerate(spec.then))
    problems.raise_any()
    nodes = {name: _node(name, spec, parts[name], when[name]) for name in order}
    return Graph(spec=spec, file=problems.file, nodes=nodes, outputs=outputs, chains=chains,
                 input_models=input_models)


def _node(name: str, spec: GraphSpec, parts: _Parts, when: tuple[Condition, ...]) -> Node:
    node = spec.nodes[name]
    assert parts.op is not None  # a node without an operator was reported, and nothing is built
    return Node(name=name, op=parts.op, params=parts.params, inputs=parts.inputs, map=parts.map, deps=parts.deps,
                weight=node.weight if node.weight is not None else parts.op.weight, retries=node.retries,
                resources=dict(node.resources), params_template=parts.params_template, timeout=node.timeout,
                when=when, max_tasks=node.max_tasks or spec.max_tasks_per_node, cache=node.cache)


def _node_parts(name: str, node: NodeSpec, spec: GraphSpec, registry: OperatorRegistry, mapped: set[str],
                problems: Problems) -> _Parts:
    """Check one node: its operator, params and inputs against it, its references and its map."""
    op: OperatorSpec | None = None
    params: Any = None
    template: dict[str, Any] | None = None
    with problems.check():
        try:
            op = registry.get(node.op)
        except UnknownOperatorError as exc:
            raise UnknownOperatorInGraphError(f"node '{name}': {exc}", line=problems.at("nodes", name, "op")) from None
    if op is not None:
        with problems.check():
            params, template = check_params(name, op, node.params, spec, problems.at("nodes", name, "params"))
        _check_input_names(name, node, op, problems)
        if node.cache and op.version is None:
            problems.errors.append(GraphValidationError(
                f"node '{name}': cache: true needs operator '{op.name}' to declare a version "
                f"(@operator(\"{op.name}\", version=1)), part of every cache key", file=problems.file,
                line=problems.at("nodes", name, "cache")))
    deps: set[str] = set()
    inputs: dict[str, Any] = {}
    for key, raw in node.inputs.items():
        line = problems.at("nodes", name, "inputs", key)
        with problems.check():
            try:
                inputs[key] = parse_value(raw)
            except ValueError as exc:
                raise UnresolvedReferenceError(f"node '{name}', input '{key}': {exc}", line=line) from None
        for ref in walk_refs(inputs.get(key)):
            with problems.check():
                deps |= check_ref(ref, spec, mapped, node_name=name, is_mapped=node.map is not None, line=line)
    map_ref = _parse_map(name, node, spec, mapped, problems)
    if map_ref is not None and map_ref.scope == "node":
        deps.add(map_ref.name)
    if node.max_tasks is not None and node.map is None:
        problems.errors.append(GraphValidationError(
            f"node '{name}': max_tasks bounds a fan-out, but the node has no map", file=problems.file,
            line=problems.at("nodes", name, "max_tasks")))
    return _Parts(op, params, template, inputs, map_ref, frozenset(deps))


def _check_input_names(name: str, node: NodeSpec, op: OperatorSpec, problems: Problems) -> None:
    """Each input the node passes is one its operator takes, and it passes every required one."""
    if not op.accepts_any_input:
        for bad in sorted(set(node.inputs) - op.inputs):
            problems.errors.append(UnknownInputError(
                f"node '{name}': operator '{op.name}' takes no input '{bad}'.{did_you_mean(bad, op.inputs)}"
                f" It takes: {', '.join(sorted(op.inputs)) or 'nothing'}", file=problems.file,
                line=problems.at("nodes", name, "inputs", bad)))
    for missing in sorted(op.required_inputs - set(node.inputs)):
        problems.errors.append(UnknownInputError(
            f"node '{name}': operator '{op.name}' needs input '{missing}'", file=problems.file,
            line=problems.at("nodes", name, "inputs")))


def _parse_map(name: str, node: NodeSpec, spec: GraphSpec, mapped: set[str], problems: Problems) -> Ref | None:
    """``map: $node`` or ``map: $payload.<list input>``."""
    if node.map is None:
        return None
    line = problems.at("nodes", name, "map")
    with problems.check():
        try:
            ref = parse_ref(node.map)
        except ValueError as exc:
            raise UnresolvedReferenceError(f"node '{name}', map: {exc}", line=line) from None
        if ref.scope == "payload":
            check_ref(ref, spec, mapped, node_name=name, is_mapped=False, line=line)
            return ref
        if ref.scope != "node":
            raise UnresolvedReferenceError(
                f"node '{name}': map takes $<node> or $payload.<list input>, not '{ref.text}'", line=line)
        if ref.name not in spec.nodes:
            raise UnresolvedReferenceError(f"node '{name}': map refers to unknown node '{ref.name}'."
                                           f"{did_you_mean(ref.name, spec.nodes)}", line=line)
        if ref.path and ref.name in mapped:
            raise UnresolvedReferenceError(
                f"node '{name}': map over mapped node '{ref.name}' takes no field path", line=line)
        return ref
    return None


def _order(spec: GraphSpec, parts: dict[str, _Parts], problems: Problems) -> list[str]:
    """The nodes in a topological order; a cycle is a problem (and then no order)."""
    dag = nx.DiGraph()
    dag.add_nodes_from(spec.nodes)
    dag.add_edges_from((dep, name) for name, part in parts.items() for dep in part.deps)
    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        return list(nx.lexicographical_topological_sort(dag))
    names = [edge[0] for edge in cycle] + [cycle[0][0]]
    problems.errors.append(GraphCycleError(f"nodes form a cycle: {' -> '.join(names)}", file=problems.file,
                                           line=problems.at("nodes", names[0])))
    return []


def _parse_output(key: str, raw: Any, spec: GraphSpec, problems: Problems) -> Any:
    """An output: a reference to a node (a mapped one gives its ordered list), or a literal."""
    line = problems.at("outputs", key)
    with problems.check():
        try:
            parsed = parse_value(raw)
        except ValueError as exc:
            raise UnresolvedReferenceError(f"output '{key}': {exc}", line=line) from None
        for ref in walk_refs(parsed):
            with problems.check():
                target = ref.ref if isinstance(ref, Collect) else ref
                if target.scope == "item":
                    raise UnresolvedReferenceError(f"output '{key}': $item is only defined inside a mapped node",
                                                   line=line)
                # Outputs may name a mapped node directly: it becomes the ordered list.
                check_ref(ref, spec, (), node_name=f"output '{key}'", is_mapped=False, line=line)
        return parsed
    return None


def _parse_chain(i: int, chain: ChainSpec, spec: GraphSpec, problems: Problems) -> Chain:
    """A ``then:`` entry's values, parsed; they may see ``$payload``, ``$outputs`` and ``$job``."""
    fields = {"when": chain.when, "priority": chain.priority, "payload": chain.payload,
              "clip_version_id": chain.clip_version_id}
    if chain.for_each is not None:
        fields["for_each"] = chain.for_each
    parsed: dict[str, Any] = {}
    for field_name, raw in fields.items():
        line = problems.at("then", i, field_name)
        with problems.check():
            try:
                parsed[field_name] = parse_value(raw)
            except ValueError as exc:
                raise UnresolvedReferenceError(f"then[{i}].{field_name}: {exc}", line=line) from None
        for ref in walk_refs(parsed.get(field_name)):
            with problems.check():
                _check_chain_ref(ref, f"then[{i}].{field_name}", spec,
                                 item_allowed=chain.for_each is not None and field_name != "for_each", line=line)
    for_each = parsed.get("for_each")
    if for_each is not None and not isinstance(for_each, Ref):
        problems.errors.append(UnresolvedReferenceError(
            f"then[{i}].for_each takes a reference to a list, e.g. $outputs.clips", file=problems.file,
            line=problems.at("then", i, "for_each")))
    return Chain(spec=chain, when=parsed.get("when", Literal_(True)), priority=parsed.get("priority"),
                 payload=parsed.get("payload") or {}, clip_version_id=parsed.get("clip_version_id"),
                 for_each=for_each if isinstance(for_each, Ref) else None)


def _check_chain_ref(ref: Ref | Collect, where: str, spec: GraphSpec, *, item_allowed: bool,
                     line: int | None) -> None:
    target = ref.ref if isinstance(ref, Collect) else ref
    if target.scope == "outputs" and target.name not in spec.outputs:
        raise UnresolvedReferenceError(
            f"{where}: unknown output '{target.name}'.{did_you_mean(target.name, spec.outputs)}", line=line)
    if target.scope == "payload" and target.name not in spec.inputs:
        raise UnresolvedReferenceError(
            f"{where}: unknown input '{target.name}'.{did_you_mean(target.name, spec.inputs)}", line=line)
    if target.scope == "item" and item_allowed:
        return
    if target.scope in ("node", "item"):
        raise UnresolvedReferenceError(
            f"{where}: chained jobs see $payload, $outputs and $job, not '{target.text}'", line=line)


