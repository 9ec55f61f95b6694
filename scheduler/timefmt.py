"""Timestamps in the reference's format: ``2024-10-30T12:45:01.000000+00:00``."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_ts", "now_ts"]


def format_ts(moment: datetime) -> str:
    """Microseconds and ``+00:00``, never ``Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def now_ts() -> str:
    return format_ts(datetime.now(UTC))
