"""Bounds on what a payload may hold, where its graph declares none.

A graph's inputs may declare ``max_length`` (strings) and ``max_items`` (lists); pipelines/payload.py
checks those. Everything else in a payload, the fields a graph does not declare included (they are kept
in the job record), and every string and list nested in structured inputs such as a timeline, is held
here to the defaults: ``MAX_PAYLOAD_STRING`` characters, ``MAX_PAYLOAD_ITEMS`` items (or object keys),
``MAX_PAYLOAD_DEPTH`` levels. The whole body is already bounded by ``MAX_JSON_BYTES``; these keep
a 1 MiB body from being one 1 MiB string or 100,000 list items that the job then carries around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.errors import PayloadError

__all__ = ["PayloadBounds"]


@dataclass(frozen=True, slots=True)
class PayloadBounds:
    max_string: int = 10_000
    max_items: int = 10_000
    max_depth: int = 32

    def check(self, payload: Any, *, loc: tuple[Any, ...] = ("body",),
              declared: dict[str, Any] | None = None) -> None:
        """Raise :class:`PayloadError` naming every value out of bounds (at most 20 of them).

        ``declared`` maps a top-level field to its graph input spec: a declared ``max_length`` or
        ``max_items`` replaces the default for that field's own value (not for what it contains).
        """
        errors: list[dict[str, Any]] = []
        if isinstance(payload, dict):
            if len(payload) > self.max_items:
                errors.append(_too_many(list(loc), self.max_items, "keys"))
            for key, value in payload.items():
                if isinstance(key, str) and len(key) > self.max_string:
                    errors.append({"loc": list(loc), "type": "string_too_long",
                                   "msg": f"Keys should have at most {self.max_string} characters"})
                    continue
                spec = (declared or {}).get(key)
                self._walk(value, [*loc, key], 2, errors,
                           own_string=getattr(spec, "max_length", None) is not None,
                           own_items=getattr(spec, "max_items", None) is not None)
        else:
            self._walk(payload, list(loc), 1, errors)
        if errors:
            raise PayloadError(errors[:20])

    def _walk(self, value: Any, loc: list[Any], depth: int, errors: list[dict[str, Any]], *,
              own_string: bool = False, own_items: bool = False) -> None:
        if len(errors) >= 20:
            return
        if isinstance(value, str):
            if not own_string and len(value) > self.max_string:
                errors.append({"loc": loc, "type": "string_too_long",
                               "msg": f"String should have at most {self.max_string} characters"})
            return
        if not isinstance(value, dict | list):
            return
        if depth > self.max_depth:
            errors.append({"loc": loc, "type": "value_error",
                           "msg": f"Nested too deep: at most {self.max_depth} levels of lists and objects"})
            return
        if isinstance(value, list):
            if not own_items and len(value) > self.max_items:
                errors.append(_too_many(loc, self.max_items, "items"))
                return
            for index, item in enumerate(value):
                self._walk(item, [*loc, index], depth + 1, errors)
            return
        if len(value) > self.max_items:
            errors.append(_too_many(loc, self.max_items, "keys"))
            return
        for key, item in value.items():
            if len(key) > self.max_string:
                errors.append({"loc": loc, "type": "string_too_long",
                               "msg": f"Keys should have at most {self.max_string} characters"})
                return
            self._walk(item, [*loc, key], depth + 1, errors)


def _too_many(loc: list[Any], limit: int, what: str) -> dict[str, Any]:
    return {"loc": loc, "type": "too_long", "msg": f"Should have at most {limit} {what}"}
