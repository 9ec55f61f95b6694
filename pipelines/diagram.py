"""A job graph's DAG as data, as a Mermaid flowchart and as text for a terminal.

``graph_dag(graph)`` reads a loaded :class:`pipelines.graph.Graph` (the server's own loader
built it) into plain JSON: nodes in topological layers, edges with their kind (``data``, a
``map`` fan-out, a ``collect`` fan-in), the outputs and the chained jobs. ``GET /graphs/{job_type}``
carries it and its Mermaid text; ``ave graphs show`` draws either, from a local file or the server.
"""

from __future__ import annotations

import re
from typing import Any

from pipelines.graph import Graph
from pipelines.refs import Collect, Ref, walk_refs

__all__ = ["dag_lines", "graph_dag", "mermaid"]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "always" if value else "never"
    if isinstance(value, list):
        return " and ".join(_text(v) for v in value)
    return str(value)


def graph_dag(graph: Graph) -> dict[str, Any]:
    """Nodes (with their layer), edges, outputs and chained jobs of a loaded graph."""
    edges: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def edge(src: str, dst: str, kind: str) -> None:
        if (src, dst) not in seen:
            seen.add((src, dst))
            edges.append({"from": src, "to": dst, "kind": kind})

    nodes = []
    for node in graph.nodes.values():
        map_over = None
        if node.map is not None:
            map_over = node.map.text
            if node.map.scope == "node":
                edge(node.map.name, node.name, "map")
        for ref in walk_refs(node.inputs):
            if isinstance(ref, Collect):
                edge(ref.ref.name, node.name, "collect")
        for ref in walk_refs(node.inputs):
            if isinstance(ref, Ref) and ref.scope == "node":
                edge(ref.name, node.name, "data")
        when = [c.text for c in node.when]
        nodes.append({"name": node.name, "op": node.op.name, "map": map_over, "when": when or None,
                      "weight": node.weight})

    layer: dict[str, int] = {}
    for node in graph.nodes.values():  # topological order
        layer[node.name] = 1 + max((layer[d] for d in node.deps if d in layer), default=0)
    for item in nodes:
        item["layer"] = layer[item["name"]]

    outputs = []
    for name, value in graph.outputs.items():
        sources = []
        for ref in walk_refs(value):
            target = ref.ref if isinstance(ref, Collect) else ref
            if target.scope == "node" and target.name not in sources:
                sources.append(target.name)
        outputs.append({"name": name, "from": sources})

    chains = []
    for chain in graph.chains:
        item = {"job_type": chain.job_type, "when": _text(chain.spec.when)}  # as written, not parsed
        for_each = chain.spec.for_each
        if for_each:
            item["for_each"] = for_each
        chains.append(item)

    return {
        "name": graph.name,
        "description": graph.spec.description,
        "inputs": list(graph.spec.inputs),
        "nodes": nodes,
        "edges": edges,
        "outputs": outputs,
        "then": chains,
    }


# -- Mermaid -------------------------------------------------------------------------------
def _mid(prefix: str, name: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def mermaid(dag: dict[str, Any]) -> str:
    """A Mermaid ``flowchart TD``: a mapped node is a double box, ``==>`` a fan-out, ``-.->`` a fan-in."""
    lines = ["flowchart TD"]
    payload_maps: list[tuple[str, str]] = []
    for node in dag["nodes"]:
        nid = _mid("n_", node["name"])
        if node.get("map"):
            lines.append(f"  {nid}[[{_label(node['name'] + ' ×N<br/>' + node['op'])}]]")
            if str(node["map"]).startswith("$payload."):
                payload_maps.append((node["map"], nid))
        else:
            lines.append(f"  {nid}[{_label(node['name'] + '<br/>' + node['op'])}]")
    for ref, nid in payload_maps:
        pid = _mid("p_", ref[len("$payload."):])
        lines.append(f"  {pid}[/{_label(ref)}/]")
        lines.append(f"  {pid} ==>|map| {nid}")
    for e in dag["edges"]:
        src, dst = _mid("n_", e["from"]), _mid("n_", e["to"])
        if e["kind"] == "map":
            lines.append(f"  {src} ==>|map| {dst}")
        elif e["kind"] == "collect":
            lines.append(f"  {src} -.->|collect| {dst}")
        else:
            lines.append(f"  {src} --> {dst}")
    if dag["outputs"]:
        lines.append("  subgraph outputs [outputs]")
        for out in dag["outputs"]:
            lines.append(f"    {_mid('o_', out['name'])}([{_label(out['name'])}])")
        lines.append("  end")
        for out in dag["outputs"]:
            for src in out["from"]:
                lines.append(f"  {_mid('n_', src)} --> {_mid('o_', out['name'])}")
    for i, chain in enumerate(dag.get("then") or []):
        cid = f"then_{i}"
        label = f"then: {chain['job_type']}" + (f" for each {chain['for_each']}" if chain.get("for_each") else "")
        lines.append(f"  {cid}{{{{{_label(label)}}}}}")
        source = "outputs" if dag["outputs"] else _mid("n_", dag["nodes"][-1]["name"]) if dag["nodes"] else None
        if source is not None:
            when = chain.get("when")
            arrow = f" -.->|{_label('when ' + when)}| " if when and when != "always" else " -.-> "
            lines.append(f"  {source}{arrow}{cid}")
    return "\n".join(lines) + "\n"


# -- text ----------------------------------------------------------------------------------
def dag_lines(dag: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows for a terminal drawing: ``(layer, node, operator, what it takes)``, in layers."""
    incoming: dict[str, list[dict[str, str]]] = {}
    for e in dag["edges"]:
        incoming.setdefault(e["to"], []).append(e)
    rows: list[tuple[str, str, str, str]] = []
    last_layer = None
    for node in sorted(dag["nodes"], key=lambda n: (n["layer"], dag["nodes"].index(n))):
        parts = []
        if node.get("map"):
            parts.append(f"⇉ fan-out over {node['map'].lstrip('$')}")
        for e in incoming.get(node["name"], []):
            if e["kind"] == "collect":
                parts.append(f"⇶ fan-in of {e['from']}")
        data = [e["from"] for e in incoming.get(node["name"], []) if e["kind"] == "data"]
        if data:
            parts.append("← " + ", ".join(data))
        if node.get("when"):
            parts.append("if " + " and ".join(node["when"]))
        name = node["name"] + (" ×N" if node.get("map") else "")
        layer = str(node["layer"]) if node["layer"] != last_layer else ""
        last_layer = node["layer"]
        rows.append((layer, name, node["op"], "  ".join(parts)))
    return rows

