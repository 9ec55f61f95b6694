"""Errors raised by operators and the registry.

Every error here pickles with its message intact, because Dask ships exceptions from
workers back to the dispatcher, which turns them into the job's ``error_message``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AssetCheckError",
    "MediaError",
    "OperatorError",
    "OperatorParamsError",
    "PathOutsideRootError",
    "UnknownOperatorError",
    "did_you_mean",
]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return `` Did you mean 'x'?`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


class OperatorError(Exception):
    """An operator could not do its work; the message is meant for a person."""


class AssetCheckError(OperatorError, ValueError):
    """A payload value does not fit the assets it names; ``problems`` are ``(path, message)`` pairs."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))

    def __reduce__(self) -> tuple[type, tuple[list[tuple[tuple[str | int, ...], str]]]]:
        return (type(self), (self.problems,))


class MediaError(OperatorError):
    """The media could not be read or written (corrupt, truncated, not media, no such stream)."""


class PathOutsideRootError(OperatorError, ValueError):
    """A media path is absolute, climbs with ``..`` or follows a symlink out of the media root."""


class UnknownOperatorError(KeyError):
    """A graph names an operator that is not registered."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(name, self.known)

    def __str__(self) -> str:
        return f"Unknown operator '{self.name}'.{did_you_mean(self.name, self.known)}"


class OperatorParamsError(ValueError):
    """A graph gives an operator params that its params model rejects.

    ``problems`` holds ``(param, message)`` pairs, so a caller that filled a param from a
    job's payload can name the payload field at fault.
    """

    def __init__(self, message: str, problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.problems))
