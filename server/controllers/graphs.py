"""``/graphs/``: the job types on offer and the payload each one takes."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.di import Provide
from litestar.exceptions import NotFoundException

from pipelines.diagram import graph_dag, mermaid
from scheduler.admission.graphs import GraphCatalog
from server.deps import provide_catalog
from server.openapi import responses
from server.schemas import Graph, GraphDetail

__all__ = ["GraphController"]


class GraphController(Controller):
    path = "/graphs"
    tags = ["graphs"]
    dependencies = {"catalog": Provide(provide_catalog, sync_to_thread=False)}

    @get("/", summary="Job types and their inputs", operation_id="listGraphs",
         responses=responses(200, list[Graph], description="Every loaded job type"))
    async def list_graphs(self, catalog: GraphCatalog) -> list[dict[str, Any]]:
        return [graph.describe() for graph in catalog.graphs.values()]

    @get("/{job_type:str}", summary="One job type's graph", operation_id="getGraph",
         responses=responses(200, GraphDetail, 404, description="The job type's graph"))
    async def get_graph(self, catalog: GraphCatalog, job_type: str) -> dict[str, Any]:
        """Its inputs, nodes and outputs; ``dag`` (layers, edges with their kind) and ``mermaid``, a
        Mermaid flowchart of it (``ave graphs show JOB_TYPE`` draws the same in a terminal)."""
        graph = catalog.graphs.get(job_type)
        if graph is None:
            raise NotFoundException(detail=f"Job type {job_type} not found")
        dag = graph_dag(graph)
        return {**graph.describe(), "dag": dag, "mermaid": mermaid(dag)}
