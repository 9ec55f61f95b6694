"""References between graph parts: ``$payload.x``, ``$node``, ``$node.field``, ``$item``, ``$job.id``.

A value in a node's ``inputs`` is either a literal, a reference string, or
``{collect: $mapped_node}`` for an ordered fan-in. ``$$`` escapes a literal dollar.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Condition", "Collect", "Literal_", "Ref", "map_tree", "parse_ref", "parse_value", "walk_refs"]

_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+)*)$")

Scope = Literal["payload", "node", "item", "job", "outputs"]
_SCOPES = {"payload", "item", "job", "outputs"}


@dataclass(frozen=True, slots=True)
class Ref:
    """``$scope.path``; for a node, ``name`` is the node and ``path`` the fields inside its result."""

    scope: Scope
    name: str
    path: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``when:`` condition of a node: ``$payload.x`` (truthy), ``not $payload.x``, ``$payload.x == value``
    or ``$payload.x != value`` (``value`` a plain word, compared with the input's value as text)."""

    negated: bool
    ref: Ref
    equals: str | None = None

    def holds(self, value: Any) -> bool:
        met = bool(value) if self.equals is None else _as_text(value) == self.equals
        return met != self.negated

    @property
    def text(self) -> str:
        if self.equals is None:
            return f"{'not ' if self.negated else ''}{self.ref.text}"
        return f"{self.ref.text} {'!=' if self.negated else '=='} {self.equals}"


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class Collect:
    """``{collect: $node}``: the ordered list of a mapped node's results."""

    ref: Ref


@dataclass(frozen=True, slots=True)
class Literal_:
    value: Any


def parse_ref(text: str) -> Ref:
    match = _REF.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a reference: write $payload.<input>, $<node>[.field], $item or $job.id")
    head, rest = match.group(1), match.group(2)
    path = tuple(p for p in rest.split(".") if p)
    if head in _SCOPES:
        if head in ("payload", "outputs", "job") and not path:
            raise ValueError(f"'{text}' needs a name after '${head}.'")
        if head in ("payload", "outputs", "job"):
            return Ref(head, path[0], path[1:], text)  # type: ignore[arg-type]
        return Ref("item", "item", path, text)
    return Ref("node", head, path, text)


def parse_value(value: Any) -> Ref | Collect | Literal_ | list[Any] | dict[str, Any]:
    """Parse one input value; lists and plain mappings are parsed element by element."""
    if isinstance(value, str):
        if value.startswith("$$"):
            return Literal_(value[1:])
        if value.startswith("$"):
            return parse_ref(value)
        return Literal_(value)
    if isinstance(value, dict):
        if set(value) == {"collect"}:
            inner = value["collect"]
            ref = parse_ref(inner) if isinstance(inner, str) else None
            if ref is None or ref.scope != "node":
                raise ValueError("collect takes a reference to a mapped node, e.g. {collect: $transcode}")
            return Collect(ref)
        return {k: parse_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [parse_value(v) for v in value]
    return Literal_(value)


def map_tree(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """Rebuild the dicts and lists of ``value`` with ``leaf`` applied to everything else.

    The one walker over value trees: parsed inputs (refs, literals), the templates a task
    fills on its worker (slots), params templates. Only plain ``dict`` and ``list`` are
    containers; a :class:`Collect`, a pydantic model or a tuple is a leaf.
    """
    if isinstance(value, dict):
        return {k: map_tree(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [map_tree(v, leaf) for v in value]
    return leaf(value)


def walk_refs(parsed: Any) -> list[Ref | Collect]:
    """Every reference inside a parsed value, in order."""
    found: list[Ref | Collect] = []
    map_tree(parsed, lambda leaf: found.append(leaf) if isinstance(leaf, Ref | Collect) else None)
    return found
