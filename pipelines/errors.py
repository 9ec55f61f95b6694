"""Named errors for loading, validating and running job graphs.

Each load-time error carries the graph file, the YAML line and the reason, so a broken
graph stops start-up with a message that points at the line to fix.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CollectWithoutMapError",
    "GraphCycleError",
    "GraphError",
    "GraphLoadError",
    "GraphValidationError",
    "InvalidParamsError",
    "JobFailedError",
    "PayloadError",
    "UnknownInputError",
    "UnknownOperatorInGraphError",
    "UnresolvedReferenceError",
]


class GraphError(Exception):
    """A graph file is broken. ``str()`` reads ``file:line: reason``."""

    def __init__(self, reason: str, *, file: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        super().__init__(reason, file, line)

    def __str__(self) -> str:
        where = self.file or "<graph>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.reason}"

    def located(self, file: str | None, line: int | None) -> GraphError:
        """The same error, with a location filled in where it was missing."""
        if self.file is None:
            self.file = file
        if self.line is None:
            self.line = line
        return self


class GraphLoadError(GraphError):
    """The YAML does not parse, or does not have the shape of a graph."""


class GraphValidationError(GraphError):
    """The graph parses but is not a valid graph."""


class UnknownOperatorInGraphError(GraphValidationError):
    """A node names an operator that is not registered."""


class InvalidParamsError(GraphValidationError):
    """A node's params do not fit its operator's params model."""


class UnknownInputError(GraphValidationError):
    """A node passes an input its operator does not take, or leaves a required one out."""


class UnresolvedReferenceError(GraphValidationError):
    """A ``$reference`` names no input, node or item."""


class GraphCycleError(GraphValidationError):
    """The nodes depend on each other in a cycle."""


class CollectWithoutMapError(GraphValidationError):
    """``collect`` names a node that is not mapped, or a mapped node is used without ``collect``."""


class PayloadError(ValueError):
    """A job payload does not fit the graph's declared inputs.

    ``errors`` is a list of ``{"loc": [...], "msg": str, "type": str}``, the shape of a 422.
    """

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))


class JobFailedError(RuntimeError):
    """A graph run failed; the message is the job's ``error_message``."""
