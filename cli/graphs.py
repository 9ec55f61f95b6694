"""``ave graphs check`` and ``ave graphs show``: graph files checked and drawn offline with the
server's own loader (``show`` asks the server for a job type that is not in the graphs dir)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.api import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Api, CliError, make_console

__all__ = ["cmd_graphs_check", "cmd_graphs_show", "draw_dag"]


# -- graphs (offline) ----------------------------------------------------------------------
def _graphs_dir(args: argparse.Namespace) -> Path:
    return Path(args.graphs_dir or os.environ.get("GRAPHS_DIR") or "graphs")


def _import_modules(modules: Sequence[str]) -> None:
    import importlib

    sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001
            raise CliError(f"--import {name}: {type(exc).__name__}: {exc}", EXIT_USAGE) from None


def cmd_graphs_check(api: Api | None, args: argparse.Namespace) -> int:
    from pipelines.errors import GraphError
    from pipelines.loader import load_graph

    _import_modules(args.imports)
    files = [Path(f) for f in args.files] or sorted(_graphs_dir(args).glob("*.yaml"))
    if not files:
        raise CliError(f"no graph files given, and none in {_graphs_dir(args)}", EXIT_USAGE)
    broken = 0
    results = []
    for path in files:
        try:
            graph = load_graph(path)
        except GraphError as exc:
            broken += 1
            results.append({"file": str(path), "ok": False, "line": exc.line, "reason": exc.reason,
                            "error": str(exc)})
            if not args.json:
                print(str(exc), flush=True)
            continue
        results.append({"file": str(path), "ok": True, "name": graph.name, "nodes": len(graph.nodes)})
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{len(files)} graph file(s) checked, {broken} with errors", file=sys.stderr)
    return EXIT_FAILED if broken else EXIT_OK


def _local_graph(args: argparse.Namespace) -> Any | None:
    from pipelines.loader import load_graph

    candidate = Path(args.job_type)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        path = candidate
    else:
        path = _graphs_dir(args) / f"{args.job_type}.yaml"
        if not path.is_file():
            return None
    _import_modules(args.imports)
    return load_graph(path)


def cmd_graphs_show(api: Api, args: argparse.Namespace) -> int:
    from pipelines.errors import GraphError

    try:
        graph = _local_graph(args)
    except GraphError as exc:
        print(str(exc))
        return EXIT_FAILED
    if graph is not None:
        from pipelines.diagram import graph_dag, mermaid

        dag = graph_dag(graph)
        text = mermaid(dag)
        source = graph.file
    else:
        described = api.request("GET", f"/graphs/{args.job_type}", "graphs show")
        dag, text, source = described.get("dag"), described.get("mermaid"), api.base_url
        if dag is None or text is None:
            raise CliError(f"{api.base_url} does not describe the DAG of {args.job_type}")
    if args.mermaid:
        sys.stdout.write(text)
        return EXIT_OK
    if args.json:
        print(json.dumps(dag))
        return EXIT_OK
    draw_dag(dag, source)
    return EXIT_OK


def draw_dag(dag: dict[str, Any], source: str) -> None:
    from rich.table import Table
    from rich.text import Text

    from pipelines.diagram import dag_lines

    console = make_console(stderr=False)
    console.print(Text(dag["name"], style="bold") + Text(f"  {source}", style="dim"))
    if dag.get("description"):
        console.print(Text(" ".join(str(dag["description"]).split()), style="dim"))
    if dag.get("inputs"):
        console.print(f"inputs: {', '.join(dag['inputs'])}", markup=False)
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for column in ("layer", "node", "operator", "takes"):
        table.add_column(column, overflow="fold")
    for row in dag_lines(dag):
        table.add_row(*(Text(c) for c in row))
    console.print(table)
    if dag.get("outputs"):
        parts = [f"{o['name']} ← {', '.join(o['from']) or '(literal)'}" for o in dag["outputs"]]
        console.print("outputs: " + "; ".join(parts), markup=False)
    for chain in dag.get("then") or []:
        extra = f" for each {chain['for_each']}" if chain.get("for_each") else ""
        console.print(f"then: {chain['job_type']}{extra} (when {chain['when']})", markup=False)
    console.print("[dim]⇉ fan-out: one task per item  ⇶ fan-in: the ordered results  ← data[/]")
