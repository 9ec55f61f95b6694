"""The Redis keys of brand kits, built here (beside ``scheduler.records.keys``, with its prefix); listed in the
README's key table."""

from __future__ import annotations

from scheduler.records.keys import PREFIX

__all__ = ["brand_kit", "project_brand_kits"]


def brand_kit(kit_id: str) -> str:
    """String: a brand kit's record (JSON)."""
    return f"{PREFIX}brand_kit:{kit_id}"


def project_brand_kits(project_id: str) -> str:
    """Sorted set: a project's brand kit ids by creation time."""
    return f"{PREFIX}project:{project_id}:brand_kits"
