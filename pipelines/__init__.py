"""Job graphs: the YAML spec, loading and validation (here), and running them on Dask (``run/``).

The names below are loaded on first use (PEP 562), so ``import pipelines`` stays light: loading and drawing a
graph (``ave graphs show``) never imports Dask, which only :mod:`pipelines.run` needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "pipelines.errors": "CollectWithoutMapError GraphCycleError GraphError GraphLoadError GraphValidationError "
                        "InvalidParamsError JobFailedError PayloadError UnknownInputError "
                        "UnknownOperatorInGraphError UnresolvedReferenceError",
    "pipelines.graph": "Chain Graph Node",
    "pipelines.loader": "load_graph load_graph_dir parse_graph",
    "pipelines.payload": "BoundPayload SourceRequest bind_payload",
    "pipelines.run.runner": "DEFAULT_MAX_TASKS GraphRun JobInfo resolve_value",
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names.split()}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
