"""Named errors for loading, validating and running job graphs.

Each load-time error carries the graph file, the YAML line and the reason, so a broken
graph stops start-up with a message that points at the line to fix. A graph with several
problems raises one error that lists them all (``errors``), one ``file:line: reason`` a line,
so one load shows everything to fix, as Kedro does.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def __init__(self, reason: str, *, file: str | None = None, line: int | None = None,
                 errors: Sequence[GraphError] = ()) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        #: Every problem found, in line order; just this error when it is the only one.
        self.errors: tuple[GraphError, ...] = tuple(errors) or (self,)
        super().__init__(reason, file, line)

    def __str__(self) -> str:
        if len(self.errors) > 1:
            return "\n".join(str(error) for error in self.errors)
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
        for error in self.errors:
            if error is not self:
                error.located(file, None)
        return self

    @staticmethod
    def combine(errors: Sequence[GraphError]) -> GraphError:
        """One problem as itself (its own class); several as one error listing them all, by line.

        The combined error is a :class:`GraphLoadError` when every problem is one (the file's
        shape), else a :class:`GraphValidationError`; its ``line`` is the first problem's.
        """
        if not errors:
            raise ValueError("no graph errors to combine")
        if len(errors) == 1:
            return errors[0]
        ordered = sorted(errors, key=lambda e: (e.line is None, e.line or 0))
        kind = GraphLoadError if all(isinstance(e, GraphLoadError) for e in ordered) else GraphValidationError
        reason = f"{len(ordered)} problems: " + "; ".join(
            f"line {e.line}: {e.reason}" if e.line is not None else e.reason for e in ordered)
        return kind(reason, file=ordered[0].file, line=ordered[0].line, errors=ordered)


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
