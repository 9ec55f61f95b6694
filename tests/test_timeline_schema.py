"""Stored clip-version timelines are versioned: old versions are migrated on read, never broken by a new field."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest
from redis import asyncio as aioredis

from scheduler.records import clip_versions as cv_module
from scheduler.records import keys
from scheduler.records.clip_versions import ClipVersionStore
from scheduler.records.timeline_schema import TIMELINE_SCHEMA_VERSION, TimelineSchemaError, migrate_timeline

TIMELINE = {"canvas": {"width": 320, "height": 240, "fps": 30},
            "tracks": [{"type": "video", "clips": [{"asset": "asset_x", "in": 0, "out": 1}]}]}


def _v1_to_v2(timeline: dict[str, Any]) -> dict[str, Any]:
    """A future change, for the test: the canvas's ``fps`` becomes ``rate``."""
    timeline["canvas"]["rate"] = timeline["canvas"].pop("fps")
    return timeline


def _v2_to_v3(timeline: dict[str, Any]) -> dict[str, Any]:
    timeline.setdefault("background", "#000000")
    return timeline


def test_migrations_run_in_order_from_the_stored_version() -> None:
    steps = (_v1_to_v2, _v2_to_v3)
    got = migrate_timeline(json.loads(json.dumps(TIMELINE)), 1, steps)
    assert got["canvas"]["rate"] == 30 and "fps" not in got["canvas"] and got["background"] == "#000000"
    # A version-2 document runs only the second step.
    v2 = {"canvas": {"rate": 25}, "tracks": []}
    assert migrate_timeline(v2, 2, steps) == {"canvas": {"rate": 25}, "tracks": [], "background": "#000000"}
    # Unversioned (stored before versioning): version 1. The stored document itself is not changed.
    original = json.loads(json.dumps(TIMELINE))
    migrate_timeline(original, None, steps)
    assert original == TIMELINE
    assert migrate_timeline(TIMELINE, 3, steps) is TIMELINE


def test_a_timeline_from_a_newer_server_is_refused_with_a_reason() -> None:
    with pytest.raises(TimelineSchemaError, match="schema version 5, newer than the 1"):
        migrate_timeline(TIMELINE, 5, ())


def test_the_store_writes_the_version_and_migrates_old_records_on_read(redis_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            store = ClipVersionStore(redis)
            made = await store.create(project_id="proj_schema", timeline=json.loads(json.dumps(TIMELINE)))
            raw = json.loads(await redis.hget(keys.clip_version(made["id"]), "body"))
            # An old record, stored before versioning: no timeline_schema_version in its body.
            old = dict(raw, timeline_schema_version=None)
            del old["timeline_schema_version"]
            await redis.hset(keys.clip_version(made["id"]), "body", json.dumps(old))
            # This server has since learnt two migrations.
            monkeypatch.setattr(cv_module, "migrate_timeline",
                                functools.partial(migrate_timeline, migrations=(_v1_to_v2, _v2_to_v3)))
            return raw, made, await store.get(made["id"])
        finally:
            await redis.aclose()

    raw, made, read = asyncio.run(scenario())
    assert raw["timeline_schema_version"] == TIMELINE_SCHEMA_VERSION == 1
    assert made["timeline"] == TIMELINE  # a current record reads back as written
    assert read["timeline"]["canvas"] == {"width": 320, "height": 240, "rate": 30}
    assert read["timeline"]["background"] == "#000000"
    assert "timeline_schema_version" not in read  # the public record keeps exactly its documented keys
