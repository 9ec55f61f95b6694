"""``python -m tests.chaos_dispatcher``: ``python -m scheduler``, with the heartbeat TTL the chaos test asks for.

The dispatcher's heartbeat TTL (how long a silent dispatcher keeps its jobs) is the module constant
``scheduler.dispatcher.HEARTBEAT_TTL`` (15 s), not a setting. ``CHAOS_HEARTBEAT_TTL`` (whole seconds:
the heartbeat is a Redis ``SET ... EX``) replaces it before the dispatcher starts, so a dead or frozen
dispatcher's jobs are re-queued in a few seconds instead of half a minute. Nothing else changes: this runs
``scheduler/__main__.py`` itself. The chaos test reads the heartbeat key's TTL back from Redis, so it
notices if this stops taking effect (the constant renamed, or replaced by a setting: then pass that setting).
"""

from __future__ import annotations

import os
import runpy

import scheduler.dispatcher as dispatcher

__all__ = ["main"]

TTL_ENV = "CHAOS_HEARTBEAT_TTL"


def main() -> None:
    ttl = os.environ.get(TTL_ENV)
    if ttl and hasattr(dispatcher, "HEARTBEAT_TTL"):
        dispatcher.HEARTBEAT_TTL = int(ttl)
    runpy.run_module("scheduler", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
