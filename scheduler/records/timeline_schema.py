"""Stored clip-version timelines are versioned documents: each carries the schema version it was written with.

Clip versions are kept forever, and the timeline model forbids unknown fields (``extra="forbid"``), so a timeline
field added, renamed or given a new meaning later must not make old versions unreadable. Every version is stored
with :data:`TIMELINE_SCHEMA_VERSION`; reading one runs the migrations from its version to the current one, in
order, before anything validates it. A version stored before versioning existed is version 1.

To change the timeline's stored shape: write ``def _v1_to_v2(timeline: dict) -> dict`` (pure, on the JSON),
append it to :data:`MIGRATIONS`, and the current version follows from the list's length.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MIGRATIONS", "TIMELINE_SCHEMA_VERSION", "TimelineSchemaError", "migrate_timeline"]

Migration = Callable[[dict[str, Any]], dict[str, Any]]

#: ``MIGRATIONS[i]`` turns a version ``i + 1`` timeline into version ``i + 2``. None yet: version 1 is current.
MIGRATIONS: tuple[Migration, ...] = ()
TIMELINE_SCHEMA_VERSION = len(MIGRATIONS) + 1


class TimelineSchemaError(ValueError):
    """A stored timeline this code cannot read: written by a newer version of the service."""


def migrate_timeline(timeline: dict[str, Any], version: int | None,
                     migrations: Sequence[Migration] = MIGRATIONS) -> dict[str, Any]:
    """``timeline`` (stored at ``version``; None for one stored before versioning) at the current version."""
    current = len(migrations) + 1
    stored = 1 if version is None else int(version)
    if stored > current:
        raise TimelineSchemaError(f"this clip version's timeline has schema version {stored}, newer than the "
                                  f"{current} this server reads: upgrade the server that reads it")
    if stored == current:
        return timeline
    migrated = copy.deepcopy(timeline)
    for step in migrations[stored - 1:]:
        migrated = step(migrated)
    return migrated
