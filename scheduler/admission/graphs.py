"""The job types this service offers: one loaded graph per ``graphs/<job_type>.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from operators.errors import did_you_mean
from pipelines.graph import Graph
from pipelines.loader import load_graph_dir
from scheduler.errors import UnknownJobTypeError

__all__ = ["DOCUMENTED_JOB_TYPES", "GraphCatalog"]

# The reference's job types; those without a graph yet are refused as "not available yet".
DOCUMENTED_JOB_TYPES = ("ingest", "transcribe", "generate_clip", "render", "export")


@dataclass(frozen=True, slots=True)
class GraphCatalog:
    graphs: dict[str, Graph]

    @classmethod
    def load(cls, folder: str | Path) -> GraphCatalog:
        """Load and validate every graph; a broken file raises with its file and line."""
        return cls(load_graph_dir(folder))

    def get(self, job_type: str) -> Graph:
        graph = self.graphs.get(job_type)
        if graph is not None:
            return graph
        if job_type in DOCUMENTED_JOB_TYPES:
            raise UnknownJobTypeError(
                f"job_type '{job_type}' is not available yet: no graph is installed for it. "
                f"Available: {', '.join(sorted(self.graphs)) or 'none'}"
            )
        known = sorted(set(self.graphs) | set(DOCUMENTED_JOB_TYPES))
        raise UnknownJobTypeError(
            f"Unknown job_type '{job_type}'.{did_you_mean(job_type, known)} "
            f"Available: {', '.join(sorted(self.graphs)) or 'none'}"
        )

    @property
    def job_types(self) -> list[str]:
        return sorted(self.graphs)
